"""`pip install .` as the README's service install does it (not editable): the wheel carries
the demo room, the example configs and the broker config, and the installed commands find them
without a clone."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from controllerd.broker import PROJECT_ROOT, config_dir

pytestmark = pytest.mark.system

PACKAGES = ("controllerd", "drivers", "simulators", "firmware_bridge", "inventory")


def _pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, a fresh venv with it installed), built from a copy of the sources so the
    checkout gets no build/ or egg-info; the venv borrows this one's dependencies."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("config", *PACKAGES):
        shutil.copytree(PROJECT_ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(PROJECT_ROOT / name, source / name)
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), f"{source}/")
    (wheel,) = (root / "dist").glob("controllerd-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    _pip("--python", str(python), "install", "--no-deps", str(wheel))
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return wheel, venv


def test_the_wheel_carries_every_data_file(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    prefix = "controllerd-0.1.0.data/data/share/controllerd/config/"
    shipped = {name.removeprefix(prefix) for name in names if name.startswith(prefix)}
    expected = {
        str(path.relative_to(PROJECT_ROOT / "config"))
        for path in (PROJECT_ROOT / "config").rglob("*")
        if path.is_file()
    }
    assert shipped == expected


def test_an_installed_controllerd_finds_its_data_and_starts_the_demo_broker(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    _, venv = installed
    script = (
        "import controllerd, controllerd.broker as b\n"
        "print(controllerd.__file__)\n"
        "print(b.CONFIG_DIR)\n"
        f"with b.PrivateBroker(workdir=__import__('pathlib').Path({str(tmp_path)!r})) as broker:\n"
        "    print(broker.port)\n"
    )
    # Run from elsewhere, with nothing pointing at the checkout.
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
    )
    assert result.returncode == 0, result.stderr
    module, data, port = result.stdout.split()
    assert Path(module).is_relative_to(venv)
    assert Path(data) == venv / "share" / "controllerd" / "config"
    assert int(port) > 0
    checked = subprocess.run(
        [str(venv / "bin" / "controllerd"), "check-config", f"{data}/demo.toml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "freezer-1" in checked.stdout


def test_the_data_directory_is_looked_for_in_order(tmp_path: Path) -> None:
    clone = tmp_path / "clone" / "config"
    clone.mkdir(parents=True)
    assert config_dir(env="/etc/x", source=clone, prefix="/opt/c") == Path("/etc/x")
    assert config_dir(env=None, source=clone, prefix="/opt/c") == clone
    assert config_dir(env="", source=tmp_path / "none", prefix="/opt/c") == Path(
        "/opt/c/share/controllerd/config"
    )
