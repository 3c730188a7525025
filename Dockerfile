# The ticketlog image: one image, several roles (serve, relay, project; see docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain domain
COPY crypto crypto
COPY projections projections
COPY api api
COPY ticketlog ticketlog
RUN pip install --no-cache-dir . && useradd --system --uid 10001 ticketlog \
    && mkdir -p /data /keys && chown ticketlog /data /keys
USER ticketlog
ENV TICKETLOG_DATA_DIR=/data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
ENTRYPOINT ["ticketlog"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
