"""Static checks: no container is started."""

import importlib.util
import json
import pathlib
import re
import shutil
import tempfile

import pytest
import yaml

from conftest import COLLECTION, ROOT, roles, run, tail

pytestmark = pytest.mark.static


def test_yamllint():
    rc, out = run(["yamllint", "--strict", "."], "yamllint")
    assert rc == 0, tail(out)


def test_ansible_lint_production_profile():
    rc, out = run(["ansible-lint", "--profile", "production", "--nocolor"], "ansible-lint")
    assert rc == 0, tail(out)
    assert "Passed" in out, tail(out)


def _offline_pip_bootstrap():
    """Put tools/get_pip_offline.py where ansible-test looks for its pip bootstrap script."""
    ansible_test = pathlib.Path(importlib.util.find_spec("ansible_test").origin).parent
    requirements = (ansible_test / "_internal" / "python_requirements.py").read_text()
    pip_version = re.search(r"pip='([0-9.]+)'", requirements)[1]
    cache = pathlib.Path.home() / ".ansible" / "test" / "cache" / f"get_pip_{pip_version.replace('.', '_')}.py"
    cache.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "tools" / "get_pip_offline.py", cache)


def test_ansible_test_sanity():
    _offline_pip_bootstrap()
    # sanity checks the files git knows: the suite runs on a clone, so every file is known
    rc, out = run(
        ["ansible-test", "sanity", "--venv", "--python", "3.11", "--color", "no"],
        "ansible-test-sanity",
        cwd=COLLECTION,
    )
    assert rc == 0, tail(out)


def test_sanity_ignore_files_are_empty():
    for ignore in (COLLECTION / "tests" / "sanity").glob("ignore-*.txt"):
        assert ignore.read_text().strip() == "", f"{ignore} waives sanity checks"


def test_flake8():
    targets = [p for p in (COLLECTION / "plugins", COLLECTION / "tests", ROOT / "tests", ROOT / "tools", ROOT / "molecule")
               if p.exists()]
    rc, out = run(["flake8", *targets], "flake8")
    assert rc == 0, tail(out)


@pytest.mark.parametrize("role", roles())
def test_defaults_and_argument_spec_list_the_same_keys(role):
    base = COLLECTION / "roles" / role
    defaults = yaml.safe_load((base / "defaults" / "main.yml").read_text()) or {}
    spec = yaml.safe_load((base / "meta" / "argument_specs.yml").read_text())
    options = spec["argument_specs"]["main"]["options"]
    # inputs without a safe default are required in the spec and absent (commented out) in defaults
    required = {name for name, opt in options.items() if opt.get("required")}
    assert set(defaults) == set(options) - required
    assert not set(defaults) & required, "a required option must not have a default"
    for name in options:
        assert name.startswith(f"{role}_"), f"{name} is not prefixed with the role name"


@pytest.mark.parametrize("role", roles())
def test_role_readme_variables_are_generated_from_the_spec(role):
    rc, out = run([ROOT / ".venv" / "bin" / "python", ROOT / "tools" / "role_readme.py", "--check", role],
                  f"role-readme-{role}")
    assert rc == 0, out


def test_changelog_fragments_lint():
    rc, out = run(["antsibull-changelog", "lint"], "antsibull-changelog", cwd=COLLECTION)
    assert rc == 0, tail(out)


def test_collection_builds():
    with tempfile.TemporaryDirectory() as out_dir:
        rc, out = run(["ansible-galaxy", "collection", "build", "--output-path", out_dir, COLLECTION],
                      "galaxy-build")
        assert rc == 0, tail(out)
        built = list(pathlib.Path(out_dir).glob("teamflow-platform-*.tar.gz"))
        assert len(built) == 1, out
        rc, names = run(["tar", "-tzf", built[0]], "galaxy-build-list")
        assert "roles/common/tasks/main.yml" in names
        assert "tests/unit" not in names, "build_ignore must keep tests out of the tarball"


@pytest.mark.parametrize("role", roles())
def test_ansible_doc_shows_the_role_options(role):
    rc, out = run(["ansible-doc", "-t", "role", f"teamflow.platform.{role}"], f"ansible-doc-{role}")
    assert rc == 0, tail(out)
    spec = yaml.safe_load((COLLECTION / "roles" / role / "meta" / "argument_specs.yml").read_text())
    for option in spec["argument_specs"]["main"]["options"]:
        assert option in out


def modules():
    return sorted(p.stem for p in (COLLECTION / "plugins" / "modules").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("module", modules())
def test_ansible_doc_is_the_modules_manual(module):
    rc, out = run(["ansible-doc", f"teamflow.platform.{module}"], f"ansible-doc-{module}")
    assert rc == 0, tail(out)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    for section in ("OPTIONS", "EXAMPLES:", "RETURN VALUES:"):
        assert section in plain, f"ansible-doc of {module} lacks {section}"


def test_playbooks_pass_syntax_check():
    for playbook in sorted((ROOT / "playbooks").glob("*.yml")):
        rc, out = run(["ansible-playbook", "--syntax-check", "-i", "localhost,", playbook],
                      f"syntax-{playbook.stem}")
        assert rc == 0, tail(out)


def test_requirements_yml_matches_the_bundled_collections():
    rc, out = run(["ansible-galaxy", "collection", "list", "--format", "json"], "galaxy-collection-list")
    assert rc == 0, tail(out)
    listing = json.loads(out[out.index("{"):])
    installed = {}
    for collections in listing.values():
        for name, info in collections.items():
            installed.setdefault(name, info["version"])
    wanted = yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]
    assert wanted
    for entry in wanted:
        assert installed.get(entry["name"]) == entry["version"], entry["name"]
    galaxy = yaml.safe_load((COLLECTION / "galaxy.yml").read_text())
    for name in galaxy["dependencies"]:
        assert name in {entry["name"] for entry in wanted}, f"{name} is a dependency in galaxy.yml but not in requirements.yml"
