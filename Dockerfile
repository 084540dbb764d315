# CMDB GraphQL API. Used by docker-compose.yml; needs a reachable Neo4j (CMDB_NEO4J_URI).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CMDB_API_HOST=0.0.0.0 \
    CMDB_API_PORT=8000

WORKDIR /src
COPY pyproject.toml README.md ./
COPY cmdb/ ./cmdb/
RUN pip install --no-cache-dir . \
    && rm -rf /src

# Unprivileged runtime user; /app is its writable working directory (CMDB_HOME=.cmdb).
RUN groupadd --system --gid 10001 cmdb \
    && useradd --system --uid 10001 --gid cmdb --home-dir /app --create-home \
       --shell /usr/sbin/nologin cmdb
WORKDIR /app
USER cmdb

EXPOSE 8000
CMD ["cmdb", "serve"]
