"""The collection as its users get it: the docs site antsibull-docs builds, and the built tarball installed into an
empty collections path, used from outside this repository."""

import pathlib
import re
import tarfile
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from conftest import COLLECTION, ROOT, roles, run, tail

pytestmark = pytest.mark.static

GALAXY = yaml.safe_load((COLLECTION / "galaxy.yml").read_text())
PLAYBOOKS = sorted(p.stem for p in (COLLECTION / "playbooks").glob("*.yml"))


def plugins(kind):
    """Names of the collection's plugins of KIND (modules, filter, lookup), from their files."""
    base = COLLECTION / "plugins" / kind
    if kind == "filter":
        return sorted(p.stem for p in base.glob("*.yml"))
    return sorted(p.stem for p in base.glob("*.py") if p.stem != "__init__")


def specs():
    for role in roles():
        spec = yaml.safe_load((COLLECTION / "roles" / role / "meta" / "argument_specs.yml").read_text())
        yield role, spec["argument_specs"]


# --- the docs site ---------------------------------------------------------------------------

def test_antsibull_docs_lint_finds_nothing():
    rc, out = run(["antsibull-docs", "lint-collection-docs", "--plugin-docs", "."], "antsibull-docs-lint",
                  cwd=COLLECTION)
    assert rc == 0 and not out.strip().splitlines()[1:], tail(out)


@pytest.mark.parametrize("role", roles())
def test_a_computed_default_is_described_not_written_as_jinja(role):
    """antsibull-docs (and a reader) cannot use a Jinja expression as a default: such an option has none in the
    spec, and its description says how the default is computed, starting with "Default"."""
    for entry_point, spec in dict(specs())[role].items():
        assert spec.get("description"), f"entry point {entry_point} has no description"
        for name, option in (spec.get("options") or {}).items():
            assert "{{" not in str(option.get("default", "")), f"{entry_point}: {name}"
            if not option.get("required") and "default" not in option:
                assert "default" in " ".join(option.get("description", [])).lower(), f"{entry_point}: {name}"


@pytest.fixture(scope="module")
def docs_site(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs")
    rc, log = run([ROOT / "tools" / "collection_docs.sh", out], "collection-docs")
    assert rc == 0, tail(log)
    return out / "html"


def test_the_docs_site_builds_without_a_warning(docs_site):
    # tools/collection_docs.sh builds with sphinx-build -W: a warning fails it
    assert (docs_site / "index.html").is_file()


@pytest.mark.parametrize("role", roles())
def test_every_role_page_is_a_full_page(docs_site, role):
    """A role whose documentation antsibull-docs cannot read gets a stub saying so: each page has every entry point
    and every option of the role's spec instead."""
    page = (docs_site / f"{role}_role.html").read_text()
    assert "malformed" not in page.lower() and "error" not in re.sub(r"<[^>]+>", "", page).lower().split(
        "entry point", 1)[0]
    for entry_point, spec in dict(specs())[role].items():
        assert re.search(rf"Entry point <code[^>]*><span class=\"pre\">{entry_point}</span>", page), entry_point
        for name in spec.get("options") or {}:
            assert name in page, f"{entry_point}: {name}"


# --- the tarball, installed elsewhere ---------------------------------------------------------

@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The collection built with ansible-galaxy and installed from its tarball into an empty collections path;
    (tarball, environment and working directory to use it from outside this repository)."""
    base = tmp_path_factory.mktemp("installed")
    rc, out = run(["ansible-galaxy", "collection", "build", "--output-path", base / "dist", COLLECTION],
                  "galaxy-build")
    assert rc == 0, tail(out)
    [tarball] = (base / "dist").glob("teamflow-platform-*.tar.gz")
    (base / "elsewhere").mkdir()
    (base / "ansible.cfg").write_text("[defaults]\n")
    env = {"ANSIBLE_CONFIG": str(base / "ansible.cfg"), "ANSIBLE_COLLECTIONS_PATH": str(base / "collections")}
    # no dependency from Galaxy: the ones galaxy.yml names come with the ansible package
    rc, out = run(["ansible-galaxy", "collection", "install", "--no-deps", "-p", base / "collections", tarball],
                  "galaxy-install", cwd=base / "elsewhere", env=env)
    assert rc == 0 and "Installing 'teamflow.platform:" in out, tail(out)
    return tarball, env, base / "elsewhere"


def test_the_tarball_carries_what_users_run_and_read(installed):
    tarball, _, _ = installed
    assert tarball.name == f"teamflow-platform-{GALAXY['version']}.tar.gz"
    with tarfile.open(tarball) as archive:
        names = set(archive.getnames())
    wanted = {f"playbooks/{name}.yml" for name in PLAYBOOKS} | {
        "playbooks/tasks/nginx_pool.yml", "CHANGELOG.md", "docs/runbook.md", "requirements.txt",
        "meta/execution-environment.yml", "meta/ee-requirements.txt", "roles/common/tasks/main.yml"}
    assert wanted - names == set()
    assert not [name for name in names if name.startswith(("tests/", "changelogs/fragments/"))
                or "/rule_tests/" in name], "test data ships in the tarball"


def test_the_installed_collection_is_the_tarball_not_this_repository(installed):
    _, env, elsewhere = installed
    rc, out = run(["ansible-galaxy", "collection", "list", "teamflow.platform"], "galaxy-list", cwd=elsewhere, env=env)
    assert rc == 0 and re.search(rf"teamflow\.platform\s+{re.escape(GALAXY['version'])}", out), tail(out)
    assert str(ROOT / "ansible_collections") not in out


@pytest.mark.parametrize("kind, names", [
    ("role", roles()), ("module", plugins("modules")), ("filter", plugins("filter")), ("lookup", plugins("lookup"))])
def test_ansible_doc_documents_every_role_and_plugin_of_the_installed_collection(installed, kind, names):
    _, env, elsewhere = installed
    assert names
    rc, out = run(["ansible-doc", "-t", kind, *[f"teamflow.platform.{name}" for name in names]],
                  f"installed-ansible-doc-{kind}", cwd=elsewhere, env=env)
    assert rc == 0 and "[WARNING]" not in out and "[ERROR]" not in out, tail(out)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    # each page's head names the plugin and where it was found: the installed copy
    installed_at = pathlib.Path(env["ANSIBLE_COLLECTIONS_PATH"]) / "ansible_collections" / "teamflow" / "platform"
    heads = dict(re.findall(r"^> (?:ROLE:|[A-Z]+) teamflow\.platform\.(\w+) \((.*)\)$", plain, re.M))
    assert set(heads) == set(names), tail(out)
    for name, path in heads.items():
        assert path.startswith(str(installed_at)), (name, path)


def test_every_playbook_of_the_installed_collection_passes_syntax_check(installed):
    _, env, elsewhere = installed
    assert {"site", "deploy", "rollback", "backup", "backup_verify", "certificate_check"} <= set(PLAYBOOKS)

    def check(name):
        return name, run(["ansible-playbook", "--syntax-check", "-i", "localhost,", f"teamflow.platform.{name}"],
                         f"installed-syntax-{name}", cwd=elsewhere, env=env)

    with ThreadPoolExecutor(4) as pool:
        for name, (rc, out) in pool.map(check, PLAYBOOKS):
            assert rc == 0, (name, tail(out))


def test_the_repository_playbooks_are_the_collection_playbooks():
    """playbooks/NAME.yml of the repository imports teamflow.platform.NAME and nothing else (awx.yml, which
    configures AWX from this repository's awx/, is the repository's own)."""
    for path in sorted((ROOT / "playbooks").glob("*.yml")):
        if path.stem == "awx":
            continue
        plays = yaml.safe_load(path.read_text())
        assert plays == [{"name": f"Run teamflow.platform.{path.stem}",
                          "ansible.builtin.import_playbook": f"teamflow.platform.{path.stem}"}], path
    assert {p.stem for p in (ROOT / "playbooks").glob("*.yml")} - {"awx"} == set(PLAYBOOKS)


def test_docs_links_inside_the_collection_resolve_inside_it():
    for readme in [COLLECTION / "README.md", *sorted((COLLECTION / "roles").glob("*/README.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)", readme.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            resolved = (readme.parent / target).resolve()
            assert resolved.exists(), f"{readme.relative_to(ROOT)}: {target}"
            assert resolved.is_relative_to(COLLECTION), f"{readme.relative_to(ROOT)} links outside: {target}"
