import { Transform, type TransformCallback } from 'node:stream';

/**
 * Passes an MQTT byte stream through unchanged while reading each packet's fixed header, and
 * fails the stream as soon as one announces a body larger than `maxPacketBytes`. aedes' parser
 * (mqtt-packet) has no size limit and would buffer a huge packet whole; this stops it at the header.
 */
export class MqttFrameGuard extends Transform {
  private header: number[] = [];
  private bodyLeft = 0;

  constructor(private readonly maxPacketBytes: number) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.bodyLeft > 0) {
        const take = Math.min(this.bodyLeft, chunk.length - i);
        this.bodyLeft -= take;
        i += take;
        continue;
      }
      // Reading a fixed header: 1 type byte then a 1–4 byte varint length.
      const byte = chunk[i] as number;
      this.header.push(byte);
      i++;
      if (this.header.length === 1) continue;
      const lenBytes = this.header.length - 1;
      if ((byte & 0x80) !== 0) {
        if (lenBytes >= 4) return cb(new Error('malformed MQTT remaining length'));
        continue;
      }
      let len = 0;
      for (let k = lenBytes; k >= 1; k--) len = len * 128 + ((this.header[k] as number) & 0x7f);
      this.header = [];
      if (len > this.maxPacketBytes) {
        return cb(new Error(`MQTT packet of ${len} bytes exceeds the limit of ${this.maxPacketBytes}`));
      }
      this.bodyLeft = len;
    }
    cb(null, chunk);
  }
}
