/**
 * Manifests from a registry: telling an index from an image manifest (OCI and
 * Docker schema2; schema1 is refused clearly), choosing the platform manifest
 * out of an index, and resolving `tag` or `@digest` to a verified platform
 * manifest.
 */
import { checkDescriptor, checkManifest, type ImageManifest } from '@conveyor/lib-common/image';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { INDEX_MEDIA_TYPES, isSchema1, MEDIA_TYPES } from '@conveyor/lib-common/mediatypes';
import { formatPlatform, platformMatches } from '@conveyor/lib-common/platform';
import type { Descriptor, Platform } from '@conveyor/lib-common/records';
import type { ManifestResponse, RegistryClient, RepositoryRef } from './client.js';

export type IndexEntry = Descriptor & { platform?: Platform };

export type ParsedManifest = { kind: 'index'; manifests: IndexEntry[]; mediaType: string } | { kind: 'manifest'; manifest: ImageManifest; mediaType: string };

/** Content-Types that say nothing about the manifest inside: schema1's, and the application/json old registries serve. */
const VAGUE_CONTENT_TYPES = new Set<string>([MEDIA_TYPES.dockerSchema1, MEDIA_TYPES.dockerSchema1Signed, 'application/json']);

/** The error for a schema1 manifest (told by lib-common's isSchema1), wherever the registry client meets one. */
export function schema1Error(what: string, details: Record<string, unknown>): ConveyorError {
  return new ConveyorError('ERR_MANIFEST_UNSUPPORTED', `${what} is a Docker schema1 manifest, which is not supported`, {
    hint: 'schema1 is deprecated and unsafe (no content-addressed config); push the image again with a current client (docker, skopeo, buildah) to get a schema2 or OCI manifest',
    details,
  });
}

/** Parses and validates what a registry sent for a manifest request. */
export function parseManifest(response: ManifestResponse, what: string): ParsedManifest {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(response.body.toString('utf8'));
  } catch (error) {
    throw new ConveyorError('ERR_MANIFEST_INVALID', `${what}: not valid JSON: ${(error as Error).message}`);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new ConveyorError('ERR_MANIFEST_INVALID', `${what}: not a JSON object`);
  const declared = typeof json.mediaType === 'string' ? json.mediaType : undefined;
  const contentType = response.mediaType;
  if (isSchema1(contentType, json)) throw schema1Error(what, { digest: response.digest, mediaType: contentType || declared });
  const mediaType = declared ?? (VAGUE_CONTENT_TYPES.has(contentType) || contentType === '' ? undefined : contentType);
  if (declared && contentType && !VAGUE_CONTENT_TYPES.has(contentType) && contentType !== declared) {
    throw new ConveyorError('ERR_MANIFEST_INVALID', `${what}: Content-Type ${contentType} but the manifest says ${declared}`);
  }
  const isIndex = mediaType ? INDEX_MEDIA_TYPES.includes(mediaType) : Array.isArray(json.manifests);
  if (isIndex) {
    if (json.schemaVersion !== 2 || !Array.isArray(json.manifests))
      throw new ConveyorError('ERR_MANIFEST_INVALID', `${what}: an index without a manifests list`);
    const manifests = (json.manifests as unknown[]).map((m, i) => {
      const d = checkDescriptor(m, `${what} entry ${i}`) as IndexEntry;
      const p = (m as { platform?: unknown }).platform as Platform | undefined;
      if (p !== undefined && (typeof p !== 'object' || p === null || typeof p.os !== 'string' || typeof p.architecture !== 'string')) {
        throw new ConveyorError('ERR_MANIFEST_INVALID', `${what} entry ${i}: malformed platform`);
      }
      return d;
    });
    return { kind: 'index', manifests, mediaType: mediaType ?? MEDIA_TYPES.ociIndex };
  }
  const manifest = checkManifest(json, response.digest);
  return { kind: 'manifest', manifest, mediaType: mediaType ?? MEDIA_TYPES.ociManifest };
}

/**
 * Picks the manifest for `wanted` from an index: an exact variant match first,
 * then any entry of the OS and architecture (a wanted variant must match).
 * Attestation entries (`unknown/unknown`) never match.
 */
export function selectPlatform(manifests: IndexEntry[], wanted: Platform, what: string): IndexEntry {
  const candidates = manifests.filter((m) => m.platform && platformMatches(m.platform, wanted));
  const exact = candidates.find((m) => (m.platform!.variant ?? '') === (wanted.variant ?? ''));
  const chosen = exact ?? candidates[0];
  if (chosen) return chosen;
  const available = manifests.filter((m) => m.platform && m.platform.os !== 'unknown').map((m) => formatPlatform(m.platform!));
  throw new ConveyorError('ERR_PLATFORM_NOT_FOUND', `${what} has no manifest for ${formatPlatform(wanted)}`, {
    hint: available.length ? `available: ${[...new Set(available)].join(', ')}; choose one with --platform` : 'the index lists no platforms',
    details: { available },
  });
}

export interface ResolvedManifest {
  /** The platform manifest's descriptor (mediaType, digest, size). */
  descriptor: Descriptor;
  manifest: ImageManifest;
  /** The manifest bytes exactly as served (their sha256 is descriptor.digest). */
  body: Buffer;
  /** Set when the reference named an index. */
  indexDigest?: string;
  /** The platform the index entry declared. */
  platform?: Platform;
}

/** Resolves a tag or digest to a verified platform manifest. */
export async function resolveManifest(
  client: RegistryClient,
  ref: RepositoryRef,
  reference: string,
  wanted: Platform,
  signal?: AbortSignal,
): Promise<ResolvedManifest> {
  const name = `${ref.registry}/${ref.repository}${reference.startsWith('sha256:') ? '@' : ':'}${reference}`;
  const first = await client.getManifest(ref, reference, signal);
  const parsed = parseManifest(first, name);
  if (parsed.kind === 'manifest') {
    return { descriptor: { mediaType: parsed.mediaType, digest: first.digest, size: first.body.length }, manifest: parsed.manifest, body: first.body };
  }
  const chosen = selectPlatform(parsed.manifests, wanted, `index ${name}`);
  const second = await client.getManifest(ref, chosen.digest, signal);
  if (second.body.length !== chosen.size) {
    throw new ConveyorError('ERR_SIZE_MISMATCH', `manifest ${chosen.digest}: ${second.body.length} bytes, the index says ${chosen.size}`);
  }
  const inner = parseManifest(second, `${name} (${formatPlatform(chosen.platform!)})`);
  if (inner.kind !== 'manifest') throw new ConveyorError('ERR_MANIFEST_UNSUPPORTED', `${name}: an index inside an index is not supported`);
  return {
    descriptor: { mediaType: inner.mediaType, digest: second.digest, size: second.body.length },
    manifest: inner.manifest,
    body: second.body,
    indexDigest: first.digest,
    platform: chosen.platform,
  };
}
