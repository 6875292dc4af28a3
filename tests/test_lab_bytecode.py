"""The lab image's bytecode cache (lab/image/teamflow_lab_bytecode.py), on this machine's Python."""

import importlib.util
import sys
import zipfile
import zipimport

import pytest

from conftest import ROOT

pytestmark = pytest.mark.unit

SOURCE = b'''"""a module as Ansible ships one"""
import sys


def where():
    return __file__, sys._getframe().f_code.co_filename


class Thing:
    def answer(self):
        return 42
'''


@pytest.fixture()
def bytecode(monkeypatch):
    """The image's module, loaded from lab/image/ without installing itself in this process."""
    monkeypatch.setattr("os.path.exists", lambda path: True)  # OFF "exists" while the module loads
    spec = importlib.util.spec_from_file_location("teamflow_lab_bytecode_test",
                                                  ROOT / "lab" / "image" / "teamflow_lab_bytecode.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.undo()
    assert zipimport._compile_source.__name__ == "_compile_source"
    return module


def payload(tmp_path, name, source=SOURCE):
    """A zip holding payloadmod.py, like an AnsiballZ payload in its own temporary directory."""
    path = tmp_path / name / "payload.zip"
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("payloadmod.py", source)
    return str(path)


def import_from(archive):
    sys.modules.pop("payloadmod", None)
    sys.path.insert(0, archive)
    try:
        return importlib.import_module("payloadmod")
    finally:
        sys.path.remove(archive)
        sys.modules.pop("payloadmod", None)
        sys.path_importer_cache.pop(archive, None)


def test_a_source_compiles_once_and_the_cached_code_names_the_zip_it_comes_from(bytecode, tmp_path, monkeypatch):
    compiled = []
    original = zipimport._compile_source

    def counting(pathname, source):
        compiled.append(pathname)
        return original(pathname, source)

    cache = tmp_path / "cache"
    monkeypatch.setattr(zipimport, "_compile_source", bytecode.caching(counting, str(cache)))
    first, second = payload(tmp_path, "run1"), payload(tmp_path, "run2")

    one = import_from(first)
    two = import_from(second)

    assert len(compiled) == 1 and compiled[0].startswith(first)
    assert len(list(cache.iterdir())) == 1
    assert two.Thing().answer() == 42
    module_file, code_file = two.where()
    assert module_file.startswith(second) and code_file.startswith(second)
    assert two.Thing.answer.__code__.co_filename.startswith(second)
    assert one.where()[1].startswith(first)


def test_a_changed_source_compiles_again(bytecode, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setattr(zipimport, "_compile_source", bytecode.caching(zipimport._compile_source, str(cache)))
    import_from(payload(tmp_path, "run1"))
    changed = import_from(payload(tmp_path, "run2", SOURCE.replace(b"42", b"43")))
    assert changed.Thing().answer() == 43
    assert len(list(cache.iterdir())) == 2


def test_a_damaged_cache_file_is_compiled_again(bytecode, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setattr(zipimport, "_compile_source", bytecode.caching(zipimport._compile_source, str(cache)))
    import_from(payload(tmp_path, "run1"))
    (entry,) = cache.iterdir()
    entry.write_bytes(b"\x00not marshal")
    assert import_from(payload(tmp_path, "run2")).Thing().answer() == 42


@pytest.mark.parametrize("euid, off, installed", [(0, False, True), (0, True, False), (1000, False, False)])
def test_it_installs_for_root_only_and_not_when_turned_off(bytecode, monkeypatch, euid, off, installed):
    monkeypatch.setattr(zipimport, "_compile_source", zipimport._compile_source)  # undone after the test
    monkeypatch.setattr("os.geteuid", lambda: euid)
    monkeypatch.setattr("os.path.exists", lambda path: off and path == bytecode.OFF)
    assert bytecode.install() is installed
    assert (zipimport._compile_source.__name__ == "compile_cached") is installed
    assert bytecode.install() is False  # never twice


def test_it_leaves_a_zipimport_it_does_not_know_alone(bytecode, monkeypatch):
    """A Python whose zipimport compiles with other arguments (or not in _compile_source) goes without."""
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setattr("os.path.exists", lambda path: False)
    monkeypatch.setattr(zipimport, "_compile_source", lambda pathname, source, module: None)
    assert bytecode.install() is False
    monkeypatch.delattr(zipimport, "_compile_source")
    assert bytecode.install() is False
