/**
 * The record types tools exchange on stdout, one JSON object per line. Every
 * record has `type` (a noun) and `v` (its format version). OCI descriptor
 * fields (mediaType, digest, size) are kept verbatim. docs/protocol.md is the
 * reference for every field; keep the two in step.
 */

import { ConveyorError } from './errors.js';

export const RECORD_VERSION = 1;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  urls?: string[];
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  'os.version'?: string;
}

/** A layer of an image as recorded in `image` records: the manifest descriptor plus what the config says. */
export interface LayerInfo extends Descriptor {
  /** sha256 of the uncompressed tar, from the config's rootfs.diff_ids. */
  diffID: string;
  /** OCI chain ID of this layer and all below it: the key of its unpacked directory. */
  chainID: string;
}

/** The runtime-relevant part of the image config (OCI `config` object), keys as in the spec. */
export interface ImageRuntimeConfig {
  User?: string;
  ExposedPorts?: Record<string, object>;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  Volumes?: Record<string, object>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
}

interface RecordBase {
  type: string;
  v: number;
}

/** An image in the store: emitted by img-fetch and img-ls, consumed by layer-unpack. */
export interface ImageRecord extends RecordBase {
  type: 'image';
  /** Fully normalised reference: `docker.io/library/busybox:latest`. */
  ref: string;
  /** Digest of the platform manifest (not of an index). */
  digest: string;
  mediaType: string;
  /** Digest of the index the manifest was chosen from, when there was one. */
  indexDigest?: string;
  platform: Platform;
  /** The config blob's descriptor. */
  configDescriptor: Descriptor;
  /** Entrypoint, Cmd, Env, WorkingDir, User... */
  config: ImageRuntimeConfig;
  created?: string;
  /** Bottom layer first. */
  layers: LayerInfo[];
  /** Sum of compressed layer sizes plus config and manifest. */
  size: number;
  /** Absolute path of the store root the blobs live in. */
  store: string;
}

/**
 * Emitted by img-fetch as soon as one layer blob is verified in the store,
 * before the `image` record, so a downstream unpacker can start on it while
 * later layers still download.
 */
export interface LayerRecord extends RecordBase, LayerInfo {
  type: 'layer';
  /** The image reference this layer belongs to. */
  ref: string;
  /** Position in the image, 0 = bottom. */
  index: number;
  /** Number of layers in the image. */
  count: number;
  /** ChainID of the layer below, absent for the bottom layer. */
  parentChainID?: string;
  store: string;
}

/**
 * Emitted by img-fetch when a layer blob starts downloading into the store's
 * `ingest/<hex>` (the image's config known), before its `layer` record: an
 * unpacker may read the file as it grows, and keep what it made only once the
 * `layer` (or `image`) record says the blob is verified. The fields are a
 * `layer` record's.
 */
export interface DownloadRecord extends Omit<LayerRecord, 'type'> {
  type: 'download';
}

/** An image made usable as a filesystem: emitted by layer-unpack. */
export interface RootfsRecord extends Omit<ImageRecord, 'type'> {
  type: 'rootfs';
  /** Per-layer directories (overlay lower dirs), bottom first. Present unless flattened. */
  layerDirs?: string[];
  /** The flattened root filesystem, with --flatten. */
  dir?: string;
}

/** A mounted overlay: emitted by overlay-mount, consumed by ctr-spawn. */
export interface MountRecord extends Omit<RootfsRecord, 'type'> {
  type: 'mount';
  /** Container id (64 hex characters) this mount belongs to. */
  id: string;
  /** The container directory holding upper, work and merged. */
  containerDir: string;
  /** The merged view: the container's root filesystem. */
  target: string;
  upper: string;
  work: string;
  /** How the root was put together (overlay/driver.ts): kernel `overlay`, `fuse-overlayfs`, or a `copy` of the layers (rootless fallbacks). */
  driver?: 'overlay' | 'fuse-overlayfs' | 'copy';
}

export type PortProtocol = 'tcp' | 'udp';

/** A published port (ctr-spawn -p/-P): a host address and port relayed to a port inside the container's network namespace. */
export interface PortMapping {
  /** The host address it listens on: 0.0.0.0 (every IPv4 address, Docker's default), 127.0.0.1, ::1, ... */
  hostIP: string;
  /** The host port; 0 (asked for a free one) only before the forwarder bound it. */
  hostPort: number;
  /** `-p 8000-8010:80`: the first free one of hostPort..hostPortEnd is taken, as Docker's; gone once bound. */
  hostPortEnd?: number;
  containerPort: number;
  protocol: PortProtocol;
}

/** A container's lifecycle: emitted by ctr-spawn --detach and the control-plane tools. */
export interface ContainerRecord extends RecordBase {
  type: 'container';
  id: string;
  name?: string;
  /** The image it runs as `docker ps` shows it: the reference it was started from, or its digest when it had none. */
  image?: string;
  /** The manifest digest of that image. */
  imageDigest?: string;
  /** The reference, as written by conveyor before `image` held it (read, never written). */
  ref?: string;
  status: 'created' | 'running' | 'exited';
  pid?: number;
  exitCode?: number;
  signal?: string;
  oomKilled?: boolean;
  /** How many times its supervisor restarted it (--restart). */
  restartCount?: number;
  createdAt?: string;
  startedAt?: string;
  finishedAt?: string;
  bundle?: string;
  /** Its network (ctr-spawn --net): `pasta`, `slirp4netns`, `private`, `host` or `container:<id>`. */
  network?: string;
  /** Its published ports, host ports resolved (ctr-spawn -p/-P). */
  ports?: PortMapping[];
  store: string;
}

/** A repository found by img-search: a Docker Hub search result or a registry catalog entry. */
export interface RepositoryRecord extends RecordBase {
  type: 'repository';
  /** What img-fetch pulls: Hub's name (`nginx`, `bitnami/nginx`) or `HOST/repository` from a catalog. */
  name: string;
  registry: string;
  /** Repository path on the registry: `library/nginx`. */
  repository: string;
  /** Docker Hub search only. */
  description?: string;
  stars?: number;
  official?: boolean;
  automated?: boolean;
}

/** A tag of a repository, listed by `img-search --tags`; img-fetch pulls its `ref`. */
export interface TagRecord extends RecordBase {
  type: 'tag';
  /** Full reference: `docker.io/library/busybox:1.36`. */
  ref: string;
  /** `docker.io/library/busybox` */
  name: string;
  tag: string;
  registry: string;
  repository: string;
  /** With --digests: the manifest (or index) digest the tag points at. */
  digest?: string;
  mediaType?: string;
  /** With --digests: the platforms of an index's manifests, or the one of a single manifest. */
  platforms?: Platform[];
}

/**
 * A record that breaks the protocol, or names what the store would not have
 * put there: ERR_INPUT_RECORD (exit 2). `where` places it for the reader
 * (`stdin:3`, `stdin:3 layer 1`) and starts the message when given.
 */
export function badRecord(where: string | undefined, message: string, hint?: string): ConveyorError {
  return new ConveyorError('ERR_INPUT_RECORD', where === undefined ? message : `${where}: ${message}`, { hint });
}

/** A failure travelling down the pipeline: see lib-common/pipeline. */
export type { ErrorRecord } from './pipeline.js';
