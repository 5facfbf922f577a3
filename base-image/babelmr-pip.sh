#!/bin/sh
# babelmr-pip: pip, trusting the build's `pip_cert` secret when the build has one. In a Dockerfile:
#   RUN --mount=type=secret,id=pip_cert,required=false babelmr-pip install PACKAGE
# Without the secret (a normal machine) it is plain pip; nothing of the secret stays in the image.
if [ -s /run/secrets/pip_cert ]; then
    export PIP_CERT=/run/secrets/pip_cert
fi
exec /opt/babelmr/venv/bin/python -m pip "$@"
