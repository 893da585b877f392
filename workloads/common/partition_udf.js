function (deviceId, windowEnd, shardCount) {
  // The blob folder of one aggregate row, "yyyy/MM/dd/HH/sNNNNN-of-NNNNN": the UTC hour of its window end
  // and the shard of its device. A Stream Analytics JavaScript UDF; workloads/common/shards.py computes
  // the same value in Python (tests run this file under Node and compare). ES5 only, no Math.imul or
  // TextEncoder, so that it runs on any JavaScript engine the job may use.
  function mul32(a, b) {
    return ((a & 0xffff) * b + ((((a >>> 16) * b) & 0xffff) << 16)) >>> 0;
  }
  function pad(value, width) {
    var text = String(value);
    while (text.length < width) {
      text = "0" + text;
    }
    return text;
  }
  var text = deviceId === null || deviceId === undefined ? "" : String(deviceId);
  // FNV-1a over the UTF-8 bytes (a lone surrogate as its own three bytes, like Python's "surrogatepass"),
  // then MurmurHash3's 32-bit finaliser so that every bit of the id moves the low bits the modulo keeps.
  var hash = 0x811c9dc5;
  function feed(byte) {
    hash = mul32((hash ^ byte) >>> 0, 0x01000193);
  }
  for (var i = 0; i < text.length; i++) {
    var code = text.charCodeAt(i);
    if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
      var low = text.charCodeAt(i + 1);
      if (low >= 0xdc00 && low <= 0xdfff) {
        code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
        i++;
      }
    }
    if (code < 0x80) {
      feed(code);
    } else if (code < 0x800) {
      feed(0xc0 | (code >> 6));
      feed(0x80 | (code & 0x3f));
    } else if (code < 0x10000) {
      feed(0xe0 | (code >> 12));
      feed(0x80 | ((code >> 6) & 0x3f));
      feed(0x80 | (code & 0x3f));
    } else {
      feed(0xf0 | (code >> 18));
      feed(0x80 | ((code >> 12) & 0x3f));
      feed(0x80 | ((code >> 6) & 0x3f));
      feed(0x80 | (code & 0x3f));
    }
  }
  hash = (hash ^ (hash >>> 16)) >>> 0;
  hash = mul32(hash, 0x85ebca6b);
  hash = (hash ^ (hash >>> 13)) >>> 0;
  hash = mul32(hash, 0xc2b2ae35);
  hash = (hash ^ (hash >>> 16)) >>> 0;
  var count = Number(shardCount);
  var shard = hash % count;
  var end = windowEnd instanceof Date ? windowEnd : new Date(windowEnd);
  return (
    pad(end.getUTCFullYear(), 4) + "/" + pad(end.getUTCMonth() + 1, 2) + "/" + pad(end.getUTCDate(), 2) + "/" +
    pad(end.getUTCHours(), 2) + "/s" + pad(shard, 5) + "-of-" + pad(count, 5)
  );
}
