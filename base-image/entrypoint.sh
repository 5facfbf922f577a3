#!/bin/sh
# babelmr-entrypoint: how a babelmr image starts (base-image/README.md).
#   on AWS Lambda (AWS_LAMBDA_RUNTIME_API set)  the Lambda runtime client serves the babelmr handler
#   BABELMR_LAMBDA_EMULATOR=1                   the same behind AWS's Runtime Interface Emulator (port 8080)
#   otherwise                                   one task: python -m babelmr.worker [SPEC | --spec-uri URI],
#                                               or the spec in the BABELMR_TASK_SPEC environment variable
set -e
python="${BABELMR_PYTHON:-/opt/babelmr/venv/bin/python}"
handler="${BABELMR_LAMBDA_HANDLER:-babelmr.worker.lambda_handler.handler}"
if [ -n "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
    exec "$python" -m awslambdaric "$handler"
elif [ "${BABELMR_LAMBDA_EMULATOR:-}" = "1" ]; then
    exec /usr/local/bin/aws-lambda-rie "$python" -m awslambdaric "$handler"
else
    exec "$python" -m babelmr.worker "$@"
fi
