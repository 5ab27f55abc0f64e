# One image for every pushgate role: `pushgate serve` (hub), `pushgate router`,
# `pushgate migrate`. Used by deploy/compose/docker-compose.yml and deploy/k8s/.
#   docker build -t pushgate:dev .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pushgate ./pushgate
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[mysql]'

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/pushgate --create-home pushgate
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'pushgate[mysql]' \
    && rm -rf /wheels
USER pushgate
WORKDIR /var/lib/pushgate
# Listen on every interface inside the container; nginx (or the Ingress) is the edge.
ENV PUSHGATE_HOST=0.0.0.0 \
    PUSHGATE_PORT=8080 \
    PUSHGATE_DATA_DIR=/var/lib/pushgate \
    PUSHGATE_LOG_FORMAT=json
EXPOSE 8080 7700 7701 7702
STOPSIGNAL SIGTERM
ENTRYPOINT ["pushgate"]
CMD ["serve"]
