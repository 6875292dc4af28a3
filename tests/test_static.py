"""Static checks: no container is started."""

import importlib.util
import json
import pathlib
import re
import shutil

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
    targets = [p for p in (COLLECTION / "plugins", COLLECTION / "tests", ROOT / "tests", ROOT / "tools", ROOT / "molecule",
                           ROOT / "reference-app", ROOT / "benchmarks")
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


def ansible_doc_pages(kind, names):
    """One ansible-doc run for every name (one interpreter and collection scan instead of one each): each
    name's page of its plain-text output."""
    rc, out = run(["ansible-doc", "-t", kind, *(f"teamflow.platform.{name}" for name in names)], f"ansible-doc-{kind}s")
    assert rc == 0, tail(out)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    pages = re.split(r"^> (?:ROLE:|MODULE) (teamflow\.platform\.\w+)", plain, flags=re.M)
    return {full.rsplit(".", 1)[1]: page for full, page in zip(pages[1::2], pages[2::2])}


@pytest.fixture(scope="module")
def role_pages():
    return ansible_doc_pages("role", roles())


@pytest.mark.parametrize("role", roles())
def test_ansible_doc_shows_the_role_options(role, role_pages):
    spec = yaml.safe_load((COLLECTION / "roles" / role / "meta" / "argument_specs.yml").read_text())
    for option in spec["argument_specs"]["main"]["options"]:
        assert option in role_pages[role]


def modules():
    return sorted(p.stem for p in (COLLECTION / "plugins" / "modules").glob("*.py") if p.stem != "__init__")


@pytest.fixture(scope="module")
def module_pages():
    return ansible_doc_pages("module", modules())


@pytest.mark.parametrize("module", modules())
def test_ansible_doc_is_the_modules_manual(module, module_pages):
    for section in ("OPTIONS", "EXAMPLES:", "RETURN VALUES:"):
        assert section in module_pages[module], f"ansible-doc of {module} lacks {section}"


def test_playbooks_pass_syntax_check():
    # one run for all (it stops at the first playbook that fails, naming it)
    playbooks = sorted((ROOT / "playbooks").glob("*.yml"))
    rc, out = run(["ansible-playbook", "--syntax-check", "-i", "localhost,", *playbooks], "syntax-check")
    assert rc == 0, tail(out)
    assert out.count("\nplaybook: ") + out.startswith("playbook: ") == len(playbooks), tail(out)


def test_the_lab_inventory_lists_the_site_scenario_hosts(tmp_path):
    """inventories/lab is what `make lab` (molecule scenario `site`) starts: same hosts, same groups."""
    # a copy without group_vars/: the lab's vault is made on the machine, not in a clone
    shutil.copy(ROOT / "inventories" / "lab" / "hosts.yml", tmp_path / "hosts.yml")
    rc, out = run(["ansible-inventory", "-i", tmp_path / "hosts.yml", "--list"], "inventory-lab")
    assert rc == 0, tail(out)
    listing = json.loads(out[out.index("{"):])

    def hosts_of(group):
        found = set(listing.get(group, {}).get("hosts", []))
        for child in listing.get(group, {}).get("children", []):
            found |= hosts_of(child)
        return found

    platforms = yaml.safe_load((ROOT / "molecule" / "site" / "molecule.yml").read_text())["platforms"]
    groups = {group for platform in platforms for group in platform["groups"]}
    assert {p["name"] for p in platforms} == hosts_of("all")
    for group in groups:
        assert hosts_of(group) == {p["name"] for p in platforms if group in p["groups"]}, group


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


@pytest.mark.parametrize("inventory", ["staging", "production", "compact"])
def test_example_inventories_are_complete(inventory):
    """Every host has the addresses the roles need, every required variable of a role is set, every role's
    required secret comes from the vault by a vault_ name, and every vault_ name is in vault.example.yml (not in
    group_vars/)."""
    base = ROOT / "inventories" / inventory
    rc, out = run(["ansible-inventory", "-i", base, "--list"], f"inventory-{inventory}")
    assert rc == 0, tail(out)
    # vault.example.yml and known_hosts are not inventory sources (ansible.cfg's ignore_patterns)
    assert "not a valid group definition" not in out and "Unable to parse" not in out, tail(out)
    data = json.loads(out[out.index("{"):])
    hostvars = data["_meta"]["hostvars"]
    # compact: one database host, no replica
    for group in ("web", "app", "db_primary", "cache", "monitoring") + (("db_replica",) if inventory != "compact" else ()):
        assert data[group]["hosts"], group
    for name, variables in hostvars.items():
        assert {"ansible_host", "teamflow_private_address"} <= variables.keys(), name
    text = "\n".join(p.read_text() for p in (base / "group_vars").rglob("*.yml"))
    referenced = set(re.findall(r"\bvault_[a-z0-9_]+", text))
    example = yaml.safe_load((base / "vault.example.yml").read_text())
    assert referenced == set(example), referenced ^ set(example)
    assert not list((base / "group_vars").rglob("vault.example.yml"))
    required = {name for role in roles()
                for name, option in yaml.safe_load((COLLECTION / "roles" / role / "meta" / "argument_specs.yml")
                                                   .read_text())["argument_specs"]["main"]["options"].items()
                if option.get("required")}
    assert {name for name in required if not re.search(rf"^{name}:", text, re.M)} == set(), "required but not set"
    for secret in ("postgresql_app_password", "postgresql_replication_password", "redis_admin_password",
                   "redis_app_password", "pgbackrest_cipher_pass", "app_secret_key", "app_database_password",
                   "app_redis_password"):
        assert re.search(rf"^{secret}: \"{{{{ vault_[a-z0-9_]+ }}}}\"$", text, re.M), secret


def test_the_execution_environment_definition_builds_a_context(tmp_path):
    """ansible-builder accepts execution-environment.yml and puts the repo's dependencies in the context."""
    rc, out = run(["ansible-builder", "create", "-f", ROOT / "execution-environment.yml", "-c", tmp_path / "context"],
                  "ansible-builder-create")
    assert rc == 0, tail(out)
    build = tmp_path / "context" / "_build"
    assert (tmp_path / "context" / "Dockerfile").is_file()
    assert yaml.safe_load((build / "requirements.yml").read_text()) == yaml.safe_load((ROOT / "requirements.yml").read_text())
    pins = {line.split("==")[0].lower(): line for line in (ROOT / "requirements-dev.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#")}
    python = (build / "requirements.txt").read_text().lower().splitlines()
    for name in ("boto3", "psycopg2-binary", "passlib", "bcrypt"):
        assert pins[name].lower() in python, name
    dockerfile = (tmp_path / "context" / "Dockerfile").read_text()
    assert "ansible-core==2.19.14" in dockerfile and "ansible-runner==2.4.3" in dockerfile


def test_awx_job_templates_are_consistent():
    """awx/job_templates.yml: playbooks exist, tags are site.yml's, survey fields are AWX's, the workflow's
    nodes are templates of the file and link to each other."""
    data = yaml.safe_load((ROOT / "awx" / "job_templates.yml").read_text())
    rc, out = run(["ansible-playbook", "-i", "localhost,", ROOT / "playbooks" / "site.yml", "--list-tags"], "site-list-tags")
    assert rc == 0, tail(out)
    site_tags = set()
    for line in out.splitlines():
        if "TAGS: [" in line:
            site_tags |= {t.strip() for t in line.split("TAGS: [", 1)[1].rstrip("]").split(",") if t.strip()}
    names = set()
    for template in data["awx_job_templates"]:
        names.add(template["name"])
        assert (ROOT / template["playbook"]).is_file(), template["name"]
        for tag in filter(None, template["job_tags"].split(",")):
            assert template["playbook"] == "playbooks/site.yml" and tag in site_tags, (template["name"], tag)
        assert set(template["credentials"]) <= {"machine", "vault", "backup_s3"} and "machine" in template["credentials"]
        for field in template["survey"]:
            assert {"variable", "question_name", "type", "required"} <= field.keys(), field
            assert field["type"] in {"text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect"}
            if field["type"] == "multiplechoice":
                assert field["default"] in field["choices"]
            if "default" in field and field["type"] == "integer":
                assert field.get("min", field["default"]) <= field["default"] <= field.get("max", field["default"])
    assert len(names) == len(data["awx_job_templates"])
    nodes = {node["identifier"]: node for node in data["awx_workflow"]["nodes"]}
    for node in nodes.values():
        assert node["template"] in names and set(node["success"]) <= nodes.keys(), node


# --- alert rules (role prometheus) -----------------------------------------------------------

PROMETHEUS = COLLECTION / "roles" / "prometheus"
TEST_RUNBOOK_URL = "https://runbook.example/runbook.md"


@pytest.fixture(scope="module")
def rendered_rules(tmp_path_factory):
    """The rule templates rendered with the role's defaults, next to copies of their promtool tests."""
    out = tmp_path_factory.mktemp("rules")
    for template in (PROMETHEUS / "templates").glob("*.rules.yml.j2"):
        rc, log = run(["ansible", "-i", "localhost,", "localhost", "-c", "local",
                       "-e", f"ansible_python_interpreter={ROOT / '.venv' / 'bin' / 'python'}",
                       "-e", f"@{PROMETHEUS / 'defaults' / 'main.yml'}",
                       # a short base, so the expected annotations of the promtool tests fit on a line
                       "-e", f"prometheus_runbook_url={TEST_RUNBOOK_URL}",
                       "-m", "ansible.builtin.template", "-a", f"src={template} dest={out / template.stem}"],
                      f"render-{template.stem}")
        assert rc == 0, tail(log)
    for test in (ROOT / "tests" / "alert_rules").glob("*.yml"):
        shutil.copy(test, out / test.name)
    return out


def test_alert_rules_pass_promtool_check(rendered_rules):
    files = sorted(rendered_rules.glob("*.rules.yml"))
    assert files
    rc, out = run([ROOT / "tools" / "promtool", "check", "rules", *files], "promtool-check-rules")
    assert rc == 0, tail(out)


def test_alert_rule_unit_tests_pass(rendered_rules):
    rc, out = run([ROOT / "tools" / "promtool", "test", "rules", *sorted(rendered_rules.glob("*.test.yml"))],
                  "promtool-test-rules")
    assert rc == 0, tail(out)


def test_every_alert_has_a_test_that_fires_it_and_one_that_does_not(rendered_rules):
    alerts = {rule["alert"] for path in rendered_rules.glob("*.rules.yml")
              for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"] if "alert" in rule}
    fires, quiet = set(), set()
    for path in rendered_rules.glob("*.test.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            series = [dict(re.findall(r'(\w+)="([^"]*)"', s["series"])) for s in case["input_series"]]
            for check in case.get("alert_rule_test", []):
                expected = [{k: str(v) for k, v in alert["exp_labels"].items()} for alert in check.get("exp_alerts") or []]
                if expected:
                    fires.add(check["alertname"])
                # quiet: nothing expected, or an input series whose labels no expected alert carries
                # (another instance, repository, ...), so the exact match of exp_alerts shows it stays quiet
                uncovered = [labels for labels in series
                             if not any(labels.items() <= alert.items() for alert in expected)]
                if not expected or uncovered:
                    quiet.add(check["alertname"])
    assert alerts - fires == set(), "no test fires these"
    assert alerts - quiet == set(), "no test shows these staying quiet"


def test_the_default_runbook_url_is_the_collections_runbook():
    defaults = yaml.safe_load((PROMETHEUS / "defaults" / "main.yml").read_text())
    url = defaults["prometheus_runbook_url"]
    assert url.startswith("https://") and url.endswith("/" + str((COLLECTION / "docs" / "runbook.md").relative_to(ROOT)))


def test_every_alert_links_a_runbook_section(rendered_rules):
    runbook = (COLLECTION / "docs" / "runbook.md").read_text()
    anchors = {heading.strip().lower() for heading in re.findall(r"^## (.+)$", runbook, re.M)}
    for path in rendered_rules.glob("*.rules.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    annotations = rule["annotations"]
                    assert annotations.get("summary"), rule["alert"]
                    url = annotations["runbook_url"]
                    assert url.startswith(TEST_RUNBOOK_URL + "#"), url
                    assert url.split("#", 1)[1] in anchors and url.split("#", 1)[1] == rule["alert"].lower(), url


# --- dashboards (role prometheus) -------------------------------------------------------------

def dashboard_queries():
    """(dashboard, panel title, expression) of every panel target of every dashboard JSON."""
    for path in sorted((PROMETHEUS / "files" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                yield path.stem, panel["title"], target["expr"]


def test_dashboards_are_what_tools_dashboards_writes():
    rc, out = run([ROOT / ".venv" / "bin" / "python", ROOT / "tools" / "dashboards.py", "--check"], "dashboards-check")
    assert rc == 0, tail(out)


def test_every_dashboard_query_is_valid_promql(tmp_path):
    """promtool parses each panel's expression (as a recording rule); the site scenario runs them on the lab."""
    queries = list(dashboard_queries())
    assert len(queries) > 20
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query{n}", "expr": expr} for n, (_, _, expr) in enumerate(queries)]}]}
    (tmp_path / "dashboards.rules.yml").write_text(yaml.safe_dump(rules))
    rc, out = run([ROOT / "tools" / "promtool", "check", "rules", tmp_path / "dashboards.rules.yml"], "promtool-dashboards")
    assert rc == 0, tail(out)
