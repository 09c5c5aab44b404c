# The archiver as a container image: `docker build -t akool-archiver .`
# Run (as your own uid and gid, so that it may write the archive in the current folder):
#   docker run --rm -e AKOOL_API_KEY --user "$(id -u):$(id -g)" -v "$PWD:/work" -w /work \
#       akool-archiver run videos.yaml -c archiver.yaml
#
# Two stages: the builder turns the source into a wheel and installs it (with its
# dependencies, all pure-Python or manylinux wheels) into a virtual environment; the
# final image gets that environment alone - no compiler, no pip, no source tree, no
# tests - and runs as an unprivileged user.
ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY archiver ./archiver
# pip (and setuptools, where the venv has them) only install things: the final image
# needs neither, so the environment loses them before it is copied.
RUN python -m pip wheel --wheel-dir /wheels . \
 && python -m venv /opt/archiver \
 && /opt/archiver/bin/pip install --no-index --find-links /wheels akool-archiver \
 && /opt/archiver/bin/pip uninstall --yes pip setuptools

FROM python:${PYTHON_VERSION}-slim
# The base image's own pip and setuptools go too: nothing is installed at run time.
# Group and user are both 10001, as USER below and the pods' runAsUser / runAsGroup
# say (useradd --user-group alone would give the group the next free system gid).
RUN python -m pip uninstall --yes pip setuptools wheel 2>/dev/null || true \
 && groupadd --system --gid 10001 archiver \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/archiver --create-home \
      --shell /usr/sbin/nologin archiver
COPY --from=builder /opt/archiver /opt/archiver
ENV PATH=/opt/archiver/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /home/archiver
ENTRYPOINT ["archiver"]
CMD ["--help"]
