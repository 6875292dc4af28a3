#!/usr/bin/env bash
# The lab is molecule's `site` scenario (molecule/site): `lab/lab.sh up` creates
# its containers and helpers, prepares them and converges playbooks/site.yml on
# them (a rerun converges again: it must change nothing), then prints where the
# stack answers; `lab/lab.sh destroy` removes it all. `make lab` / `make
# lab-destroy` call this with the venv on PATH and MOLECULE_IMAGE set to the
# current base image. Extra arguments go to ansible-playbook (`-- --tags nginx`).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .lab

case "${1:-up}" in
  up)
    start=$(date +%s)
    # keep the recap: a second `make lab` must report changed=0 for every host
    molecule converge --scenario-name site "${@:2}" 2>&1 | tee .lab/site.log
    echo "molecule converge (site.yml) took $(($(date +%s) - start)) s"
    echo
    echo "The lab (inventory: inventories/lab; add --vault-password-file .lab/vault-password):"
    docker ps --filter label=owner=molecule --filter network=molecule-site --format '{{.Names}}' | sort |
      while read -r name; do
        ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$name")
        printf '  %-12s %-15s docker exec -it %s bash\n' "$name" "$ip" "$name"
      done
    echo
    echo "SSH (from this machine, the lab's admin network): ssh -i .lab/admin_key alice@<address>"
    echo "The stack: https://teamflow.test/ (the web tier's shared address) from any lab host, which trusts pebble's root"
    echo "  (docker exec tf-app1 python3 -c \"import urllib.request as u; print(u.urlopen('https://teamflow.test/health').read())\")."
    echo "Metrics: https://<address>:9100/metrics on every host (node_exporter; user prometheus,"
    echo "  password: ansible-vault view --vault-password-file .lab/vault-password inventories/lab/group_vars/all/vault.yml)"
    if awk '/PLAY RECAP/{r=1;next} r && /changed=/{split($0,a,"changed=");split(a[2],b," "); if (b[1]!=0) bad=1} END{exit bad}' .lab/site.log; then
      echo "Converged: changed=0 on every host."
    fi
    ;;
  destroy)
    molecule destroy --scenario-name site
    ;;
  *)
    echo "usage: lab/lab.sh up|destroy [-- ansible-playbook options]" >&2
    exit 2
    ;;
esac
