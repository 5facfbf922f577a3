# The babelmr base image: the engine, its Python dependencies and a Lambda runtime in one image that
# runs a task on Docker, on AWS Lambda and under AWS's Lambda emulator (base-image/README.md).
#
#   babelmr image base        (or: DOCKER_BUILDKIT=1 docker build -t babelmr-base:latest .)
#
# pip runs through babelmr-pip, which uses the BuildKit secret `pip_cert` as pip's CA bundle when the
# build is given one (`--secret id=pip_cert,src=CA.pem`; `babelmr image base` does so when this
# machine's pip has a `cert`). The secret is mounted only while a RUN step runs: no trace in the image.

# The runtime every stage shares: Debian's Python 3.11 and the CA certificates (S3 over HTTPS).
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
    && useradd --uid 1000 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin mr
COPY base-image/babelmr-pip.sh /usr/local/bin/babelmr-pip

# A virtual environment with pip, the builder of the stages below (python3-venv stays here).
FROM runtime AS venv
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/babelmr/venv
ENV PATH=/opt/babelmr/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

# AWS's Lambda Runtime Interface Emulator, as shipped inside the aws-sam-cli wheel.
FROM venv AS rie
ARG SAM_CLI=aws-sam-cli
RUN --mount=type=secret,id=pip_cert,required=false \
    case "$(dpkg --print-architecture)" in \
        amd64) arch=x86_64 ;; arm64) arch=arm64 ;; \
        *) echo "no Lambda emulator for $(dpkg --print-architecture)" >&2; exit 1 ;; \
    esac \
    && babelmr-pip download --no-deps --dest /tmp/sam "$SAM_CLI" \
    && python -c 'import glob, sys, zipfile; \
w = zipfile.ZipFile(glob.glob("/tmp/sam/*.whl")[0]); \
open("/aws-lambda-rie", "wb").write(w.read("samcli/local/rapid/aws-lambda-rie-" + sys.argv[1]))' "$arch" \
    && chmod 0755 /aws-lambda-rie \
    && rm -rf /tmp/sam

# The engine's dependencies (read from pyproject.toml), in a layer that survives engine changes.
FROM venv AS deps
COPY pyproject.toml /src/
RUN --mount=type=secret,id=pip_cert,required=false \
    python -c 'import tomllib; \
print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"]))' > /tmp/requirements.txt \
    && babelmr-pip install -r /tmp/requirements.txt "awslambdaric>=2.2" \
    && find /opt/babelmr/venv -depth -type d \
        \( -path '*/site-packages/pandas/tests' -o -path '*/site-packages/pyarrow/tests' \
           -o -path '*/site-packages/numpy/*/tests' \) -exec rm -rf {} + \
    && rm -f /tmp/requirements.txt

# The engine as a wheel.
FROM venv AS wheel
COPY pyproject.toml README.md /src/
COPY engine/babelmr /src/engine/babelmr
RUN --mount=type=secret,id=pip_cert,required=false \
    babelmr-pip wheel --no-deps --wheel-dir /wheels /src

# The image: runtime + dependencies + emulator + entry point, then the engine in a small layer of its
# own (an engine change adds about a megabyte, not the whole environment); non-root; only /tmp writable.
FROM runtime
COPY --from=deps /opt/babelmr/venv /opt/babelmr/venv
COPY --from=rie /aws-lambda-rie /usr/local/bin/aws-lambda-rie
COPY base-image/entrypoint.sh /usr/local/bin/babelmr-entrypoint
# The helpers for Go and C# programs (docs/program-contract.md; Python's is the module babelmr.helper).
COPY base-image/lib/go /opt/babelmr/lib/go
COPY base-image/lib/csharp /opt/babelmr/lib/csharp
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
    /opt/babelmr/venv/bin/python -m pip install --no-cache-dir --no-deps --no-index /wheels/*.whl \
    && /opt/babelmr/venv/bin/python -c 'import babelmr.worker.lambda_handler, awslambdaric' \
    && mkdir -p /opt/job
ENV PATH=/opt/babelmr/venv/bin:$PATH \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    BABELMR_JOB_DIR=/opt/job \
    MR_WORKDIR=/tmp
LABEL org.opencontainers.image.title="babelmr-base" \
      org.opencontainers.image.description="babelmr engine, Python 3.11, pyarrow, pandas, awslambdaric, Lambda RIE"
WORKDIR /tmp
USER mr
ENTRYPOINT ["/usr/local/bin/babelmr-entrypoint"]
