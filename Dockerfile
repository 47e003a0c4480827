FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY contracts ./contracts
COPY broker ./broker
COPY actors ./actors
RUN pip install --no-cache-dir .
# The store actor only: the server is the compose file's `nats` service (NATS_URL).
CMD ["ctxstore", "serve"]
