#!/bin/sh
# trim-venv VENV: drop from a built virtualenv what a running adapter never reads.
#
# Run by the Dockerfile in the stage whose /opt/adapter an image copies, after every install.
# Each removal below was measured (MB in the serving image) and checked against what the
# adapter imports; the Dockerfile imports the server and loads the model right after.
#
# It keeps the compiled bytecode (__pycache__, 73 MB): the root filesystem is read-only, so
# without it every start would compile the Kubernetes client again (seconds of CPU).
set -eu
venv=$1
site=$(echo "$venv"/lib/python3.*/site-packages)
before=$(du -sm "$venv" | cut -f1)

# The installers (26 MB): nothing is installed at run time.
"$venv/bin/python" -m pip uninstall --yes --quiet pip setuptools wheel 2>/dev/null || true
rm -rf "$site"/_distutils_hack "$site"/distutils-precedence.pth "$venv"/bin/pip*

# The packages' own test suites (19 MB, numpy's mostly): never imported.
find "$site" -depth -type d -name tests -exec rm -rf {} +

# The Kubernetes client's asyncio twin, kubernetes.aio (68 MB): `import kubernetes` does not
# load it, and apiservice.kube, the one module that talks to the API, uses the plain client.
rm -rf "$site"/kubernetes/aio

after=$(du -sm "$venv" | cut -f1)
echo "trim-venv: $venv $before MB -> $after MB"
