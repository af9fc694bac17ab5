# Bench section (sourced by scripts/bench.sh): image uploader photos/s and MB/s through the
# upload_images step beside the raw PUT rate of the same s3s-fs server, same run.
# Needs s3s-fs (scripts/setup-s3.sh) and Postgres on 127.0.0.1:5432.
section "Image uploader: upload_images step vs raw PUTs to the same s3s-fs" \
  cargo bench -q -p rvc-image-uploader --bench uploader -- 1000
