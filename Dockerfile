# StockWatch services image: `stockwatch consume`, `stockwatch train`, `stockwatch score`, ...
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY detection ./detection
COPY consumer ./consumer
COPY config ./config
RUN pip install --no-cache-dir '.[confluent,codecs]' && useradd --create-home stockwatch && mkdir -p /models && chown stockwatch /models
USER stockwatch
ENV STOCKWATCH_MODEL_DIR=/models \
    NUMBA_CACHE_DIR=/tmp/numba-cache
# Ship numba's compiled kernels (~30 s to compile) in the image, written as the runtime user. numba
# keys its cache by the installed sources' path, mtime and size (fixed from here on) and by this
# host's CPU; on another CPU model the consumer compiles once, off the scoring loop (model_watcher).
RUN python -m detection.warmup
EXPOSE 9400
ENTRYPOINT ["stockwatch"]
