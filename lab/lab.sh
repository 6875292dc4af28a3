#!/usr/bin/env bash
# The lab: `lab/lab.sh up` starts the containers, writes the inventory, converges
# playbooks/site.yml on them and prints where the stack answers; `lab/lab.sh
# destroy` removes it all. `make lab` / `make lab-destroy` call this with the venv
# on PATH and MOLECULE_IMAGE set to the current base image.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .lab

case "${1:-up}" in
  up)
    ansible-playbook -i localhost, lab/lab.yml
    # the lab's vault password and secrets: made here, random, never committed
    lab/vault.py
    # the release the lab runs (inventories/lab/group_vars/all/release.yml)
    version=$(sed -n 's/^app_version: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' inventories/lab/group_vars/all/release.yml)
    [[ -f dist/releases/teamflow-$version.tar.gz ]] || reference-app/build-release.sh "$version"
    start=$(date +%s)
    # keep the recap: a second `make lab` must report changed=0 for every host
    ansible-playbook -i inventories/lab --vault-password-file .lab/vault-password \
      playbooks/site.yml "${@:2}" | tee .lab/site.log
    echo "site.yml took $(($(date +%s) - start)) s"
    echo
    echo "The lab (inventory: inventories/lab/hosts.yml):"
    docker ps --filter label=owner=teamflow-lab --format '{{.Names}}' | sort | while read -r name; do
      ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$name")
      printf '  %-12s %-15s docker exec -it %s bash\n' "$name" "$ip" "$name"
    done
    echo
    echo "Metrics: https://<address>:9100/metrics on every host (node_exporter; user prometheus,"
    echo "  password: ansible-vault view --vault-password-file .lab/vault-password inventories/lab/group_vars/all/vault.yml)"
    if awk '/PLAY RECAP/{r=1;next} r && /changed=/{split($0,a,"changed=");split(a[2],b," "); if (b[1]!=0) bad=1} END{exit bad}' .lab/site.log; then
      echo "Converged: changed=0 on every host."
    fi
    ;;
  destroy)
    ansible-playbook -i localhost, lab/lab.yml -e teamflow_lab_state=absent
    ;;
  *)
    echo "usage: lab/lab.sh up|destroy [ansible-playbook options]" >&2
    exit 2
    ;;
esac
