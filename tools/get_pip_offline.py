"""Stand-in for the pip bootstrap script ansible-test downloads.

ansible-test sanity --venv bootstraps pip in each of its virtualenvs with a
script it fetches from ci-files.testing.ansible.com, a host this lab cannot
reach. It reads the script from ~/.ansible/test/cache/get_pip_<version>.py
when that exists; tests/test_static.py puts this file there. Like the real
script it takes pip's install options and packages (e.g. pip==24.2), and
installs them with the pip that CPython's ensurepip carries, from PyPI.
"""

import subprocess
import sys

if __name__ == "__main__":
    args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
    # ensurepip in its own process: in this one it would set PIP_CONFIG_FILE=/dev/null
    # for the pip below, which then loses the machine's pip.conf (its CA bundle among others)
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
    sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
