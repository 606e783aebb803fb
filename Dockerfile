# StockWatch services image: `stockwatch consume`, `stockwatch train`, `stockwatch score`, ...
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY detection ./detection
COPY consumer ./consumer
COPY config ./config
RUN pip install --no-cache-dir '.[confluent]' && useradd --create-home stockwatch && mkdir -p /models && chown stockwatch /models
USER stockwatch
ENV STOCKWATCH_MODEL_DIR=/models \
    NUMBA_CACHE_DIR=/tmp/numba-cache
EXPOSE 9400
ENTRYPOINT ["stockwatch"]
