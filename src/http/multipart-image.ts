import { ErrorCode } from "../errors";
import { readBoundedBody } from "./read-bounded-body";

/** An image taken from a request, checked to be one. */
export interface ImagePart {
  /** The file's bytes; never empty, at most the route's `maxImageBytes`. */
  readonly data: Uint8Array;
  /** `image/jpeg`, `image/png`, `image/gif`, `image/webp` as sniffed from the bytes, else the
   * part's own `image/*` type (lower case, without parameters). */
  readonly mimeType: string;
}

/** Why a request's image was refused: a stable code (its HTTP status is the table's) and a
 * short reason. */
export interface ImageRefusal {
  readonly code: ErrorCode;
  readonly message: string;
}

/** The outcome of {@link readMultipartImage}. */
export type MultipartImageResult =
  | {
      readonly t: "ok";
      readonly image: ImagePart;
      /** The text fields of the form (e.g. `question`, `prompt`, `device_id`), as sent. */
      readonly text: (name: string) => string | undefined;
    }
  | ({ readonly t: "refused" } & ImageRefusal);

export interface MultipartImageOptions {
  /** Largest image accepted, bytes (a bigger one is refused with 413). */
  readonly maxImageBytes: number;
  /** The form fields that may hold the image, first found wins. Default `["file", "image"]`
   * (the firmware's camera uses `file`; other clients `image`). */
  readonly imageFields?: readonly string[];
  /** What the form may carry besides the image (boundaries, part headers, text fields), bytes.
   * Default 64 KiB. The whole body is refused unread (413) past `maxImageBytes` plus this. */
  readonly overheadBytes?: number;
}

const DEFAULT_OVERHEAD_BYTES = 64 * 1024;
const DEFAULT_IMAGE_FIELDS = ["file", "image"] as const;
/** The types {@link sniffImageType} recognises: a part declaring one of these must be one. */
const SNIFFABLE = new Set(["image/jpeg", "image/jpg", "image/png", "image/gif", "image/webp"]);

function startsWith(bytes: Uint8Array, prefix: readonly number[], offset = 0): boolean {
  if (bytes.length < offset + prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[offset + i] !== prefix[i]) return false;
  return true;
}

const ascii = (s: string): number[] => Array.from(s, (c) => c.charCodeAt(0));
const JPEG = [0xff, 0xd8, 0xff];
const PNG = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const GIF87 = ascii("GIF87a");
const GIF89 = ascii("GIF89a");
const RIFF = ascii("RIFF");
const WEBP = ascii("WEBP");

/** The image type the bytes' magic number says (JPEG, PNG, GIF, WebP), or undefined. */
export function sniffImageType(bytes: Uint8Array): string | undefined {
  if (startsWith(bytes, JPEG)) return "image/jpeg";
  if (startsWith(bytes, PNG)) return "image/png";
  if (startsWith(bytes, GIF87) || startsWith(bytes, GIF89)) return "image/gif";
  if (startsWith(bytes, RIFF) && startsWith(bytes, WEBP, 8)) return "image/webp";
  return undefined;
}

/** `Image/PNG; name=x` -> `image/png`. */
function baseType(type: string): string {
  return (type.split(";")[0] ?? "").trim().toLowerCase();
}

/**
 * Checks that `data` is a usable image: not empty (400), at most `maxImageBytes` (413), and an
 * image (415): JPEG/PNG/GIF/WebP by its magic bytes, or any other `image/*` type the sender
 * declared. A part that declares one of the four sniffable types but does not carry its magic
 * is refused (it would only fail later, in the AI). The sniffed type wins over the declared one.
 */
export function checkImage(data: Uint8Array, declaredType: string, maxImageBytes: number): ImagePart | ImageRefusal {
  if (data.length === 0) return { code: ErrorCode.MessageMalformed, message: "the image is empty" };
  if (data.length > maxImageBytes) {
    return { code: ErrorCode.MessageTooLarge, message: `the image is ${data.length} bytes; at most ${maxImageBytes} are accepted` };
  }
  const sniffed = sniffImageType(data);
  if (sniffed !== undefined) return { data, mimeType: sniffed };
  const declared = baseType(declaredType);
  if (declared.startsWith("image/") && !SNIFFABLE.has(declared) && /^image\/[a-z0-9.+-]+$/.test(declared)) return { data, mimeType: declared };
  return { code: ErrorCode.UnsupportedMediaType, message: "the file is not an image (JPEG, PNG, GIF, WebP or another image/* type)" };
}

function isRefusal(v: ImagePart | ImageRefusal): v is ImageRefusal {
  return "code" in v;
}

/**
 * Reads a `multipart/form-data` request holding one image (under `file` or `image`) and text
 * fields, with bounded memory: a body announced or found to be bigger than the image limit
 * plus `overheadBytes` is refused (413) without being buffered, then Bun's own multipart
 * parser (`Response.formData()`) splits the parts. Refusals: not multipart (415), unparsable
 * or no image part (400), and {@link checkImage}'s.
 */
export async function readMultipartImage(req: Request, options: MultipartImageOptions): Promise<MultipartImageResult> {
  const contentType = req.headers.get("content-type") ?? "";
  if (baseType(contentType) !== "multipart/form-data") {
    return { t: "refused", code: ErrorCode.UnsupportedMediaType, message: "expected a multipart/form-data body" };
  }
  const limit = options.maxImageBytes + (options.overheadBytes ?? DEFAULT_OVERHEAD_BYTES);
  const tooLarge = {
    t: "refused",
    code: ErrorCode.MessageTooLarge,
    message: `the request is over ${limit} bytes; images may be at most ${options.maxImageBytes} bytes`,
  } as const;
  if (req.body === null) return { t: "refused", code: ErrorCode.MessageMalformed, message: "the request has no body" };
  const read = await readBoundedBody(req, limit);
  if (read.t === "too-large") return tooLarge;
  if (read.t === "failed") return { t: "refused", code: ErrorCode.MessageMalformed, message: "the request body broke off" };
  const body = read.bytes;

  const form = await new Response(body, { headers: { "content-type": contentType } }).formData().catch(() => undefined);
  if (form === undefined) return { t: "refused", code: ErrorCode.MessageMalformed, message: "the multipart body does not parse" };
  let file: Blob | undefined;
  for (const name of options.imageFields ?? DEFAULT_IMAGE_FIELDS) {
    const entry = form.get(name);
    if (entry !== null && typeof entry !== "string") {
      file = entry;
      break;
    }
  }
  if (file === undefined) {
    const fields = (options.imageFields ?? DEFAULT_IMAGE_FIELDS).join(" or ");
    return { t: "refused", code: ErrorCode.MessageMalformed, message: `no image file in the form (field ${fields})` };
  }
  const checked = checkImage(await file.bytes(), file.type, options.maxImageBytes);
  if (isRefusal(checked)) return { t: "refused", ...checked };
  return {
    t: "ok",
    image: checked,
    text(name) {
      const v = form.get(name);
      return typeof v === "string" ? v : undefined;
    },
  };
}
