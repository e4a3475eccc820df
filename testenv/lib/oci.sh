# OCI image archives without a registry or a container engine. Sourced by testenv/build.
#
# oci_archive OUT REF ROOTFS CONFIG_JSON
#   writes OUT, an OCI image layout in a tar (what `ctr images import` reads), holding one image
#   named REF whose single uncompressed layer is the directory ROOTFS. CONFIG_JSON is the image
#   config's "config" object (Entrypoint, Env, ...). Reproducible: same input, same digests.
oci_archive() {
  local out=$1 ref=$2 rootfs=$3 config=$4 work
  work=$(mktemp -d)
  mkdir -p "$work/blobs/sha256"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$rootfs" -cf "$work/layer.tar" .
  local layer_digest layer_size
  layer_digest=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  layer_size=$(stat -c %s "$work/layer.tar")
  mv "$work/layer.tar" "$work/blobs/sha256/$layer_digest"

  jq -cn --argjson config "$config" --arg diff "sha256:$layer_digest" \
    '{architecture: "amd64", os: "linux", config: $config,
      rootfs: {type: "layers", diff_ids: [$diff]}}' >"$work/config.json"
  local config_digest config_size
  config_digest=$(sha256sum "$work/config.json" | cut -d' ' -f1)
  config_size=$(stat -c %s "$work/config.json")
  mv "$work/config.json" "$work/blobs/sha256/$config_digest"

  jq -cn --arg cd "sha256:$config_digest" --argjson cs "$config_size" \
    --arg ld "sha256:$layer_digest" --argjson ls "$layer_size" \
    '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
      layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $ld, size: $ls}]}' \
    >"$work/manifest.json"
  local manifest_digest manifest_size
  manifest_digest=$(sha256sum "$work/manifest.json" | cut -d' ' -f1)
  manifest_size=$(stat -c %s "$work/manifest.json")
  mv "$work/manifest.json" "$work/blobs/sha256/$manifest_digest"

  jq -cn --arg md "sha256:$manifest_digest" --argjson ms "$manifest_size" --arg ref "$ref" \
    '{schemaVersion: 2, manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: $md, size: $ms, platform: {architecture: "amd64", os: "linux"},
      annotations: {"io.containerd.image.name": $ref,
                    "org.opencontainers.image.ref.name": ($ref | sub(".*:"; ""))}}]}' \
    >"$work/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci-layout"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work" -cf "$out.tmp" oci-layout index.json blobs
  mv "$out.tmp" "$out"
  rm -rf "$work"
}
