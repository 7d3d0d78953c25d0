import { z } from 'zod';
import { OrchardError, validationError, type ErrorCode } from '../../protocol/errors.js';

/** The one error → HTTP mapping: OrchardErrors keep their code; fastify's own errors are translated. */
export function toOrchardError(err: unknown): OrchardError {
  if (err instanceof OrchardError) return err;
  // Defence in depth: every zod parse on a request path reads the caller's input and should go
  // through parseOrThrow / request-parse.ts; one that escapes is still the caller's bad input (400,
  // with the field paths), not a fault of the hub. (Was a 500 for `?node=a&node=b`.)
  if (err instanceof z.ZodError) return validationError(err, 'request');
  const e = err as { code?: string; statusCode?: number; message?: string };
  const byFastifyCode: Record<string, ErrorCode> = {
    FST_ERR_CTP_BODY_TOO_LARGE: 'ERR_PAYLOAD_TOO_LARGE',
    FST_ERR_CTP_INVALID_MEDIA_TYPE: 'ERR_UNSUPPORTED_MEDIA',
    FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'ERR_VALIDATION',
    FST_ERR_CTP_EMPTY_JSON_BODY: 'ERR_VALIDATION',
    FST_ERR_CTP_INVALID_JSON_BODY: 'ERR_VALIDATION',
  };
  const code = e.code ? byFastifyCode[e.code] : undefined;
  if (code) return new OrchardError(code, e.message ?? code, { cause: err });
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new OrchardError(e.statusCode === 413 ? 'ERR_PAYLOAD_TOO_LARGE' : 'ERR_VALIDATION', e.message ?? 'bad request', { cause: err });
  }
  return OrchardError.from(err);
}
