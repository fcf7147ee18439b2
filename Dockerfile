# Veche server image. Front-end packages come from the npm registry through the lock file.
FROM node:20-bookworm-slim AS frontend
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --omit=dev

FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 \
    VECHE_HOST=0.0.0.0 \
    VECHE_PORT=8080 \
    VECHE_DATA_DIR=/data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY server ./server
COPY rooms ./rooms
COPY media ./media
COPY recording ./recording
COPY web ./web
COPY bench ./bench
RUN pip install --no-cache-dir -e .
COPY --from=frontend /app/node_modules ./node_modules
RUN useradd --system --home /data veche && mkdir -p /data && chown veche /data
USER veche
VOLUME /data
EXPOSE 8080
# SIGTERM stops the server gracefully (clients are told, stays are closed).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/livez')" || exit 1
CMD ["veche", "serve"]
