# syntax=docker/dockerfile:1.7
# merge-bot: `docker build -t merge-bot .` then see docker-compose.yml and docs/setup-gitea.md.
# Debian 12's git is 2.39: the bot needs git >= 2.38 (merge-tree --write-tree) to build candidates.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/merge-bot --create-home merge-bot

WORKDIR /opt/merge-bot
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY gitea_sim ./gitea_sim
RUN pip install --no-cache-dir --disable-pip-version-check . && merge-bot --version

# Secrets from files (Docker/Kubernetes secrets): MERGE_BOT_<NAME>_FILE=/run/secrets/x sets MERGE_BOT_<NAME>
# to that file's content (a trailing newline dropped) before the bot starts; the bot itself reads only the
# environment (and MERGE_BOT_CONFIG's TOML file), never a secret from argv.
COPY --chmod=755 <<'EOF' /usr/local/bin/merge-bot-entrypoint
#!/bin/sh
set -eu
for file_var in $(env | sed -n 's/^\(MERGE_BOT_[A-Z0-9_]*_FILE\)=.*/\1/p'); do
  var=${file_var%_FILE}
  path=$(printenv "$file_var")
  if [ ! -r "$path" ]; then
    echo "merge-bot: $file_var names $path, which cannot be read" >&2
    exit 2
  fi
  value=$(cat "$path")
  export "$var=$value"
  unset "$file_var"
done
exec merge-bot "$@"
EOF

USER merge-bot
ENV MERGE_BOT_LISTEN=0.0.0.0:8080 \
    MERGE_BOT_DATA_DIR=/var/lib/merge-bot \
    MERGE_BOT_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/merge-bot"]
EXPOSE 8080
# /healthz answers 200 while the database answers (the port follows MERGE_BOT_LISTEN's default above).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["merge-bot-entrypoint"]
CMD ["serve"]
