#!/usr/bin/env python3
"""Convert a CTranslate2 Whisper model (model.bin) to a whisper.cpp ggml file.

Pure Python 3 standard library (no numpy, no torch). Used by scripts/fetch-models.

    ct2_to_ggml.py --model-bin model.bin --mel-npz mel_filters.npz \
                   --tiktoken gpt2.tiktoken --out ggml-tiny.en.bin

The layout written is the one whisper.cpp's models/convert-pt-to-ggml.py writes:

  i32 magic 0x67676d6c
  i32 x 11 hparams: n_vocab, n_audio_ctx, n_audio_state, n_audio_head,
         n_audio_layer, n_text_ctx, n_text_state, n_text_head, n_text_layer,
         n_mels, ftype (1 = f16)
  i32 rows, i32 cols, f32 rows*cols             mel filter bank (mel_<n_mels>)
  i32 n_tokens, then per token: i32 len, bytes  (base64 column of .tiktoken)
  per tensor: i32 n_dims, i32 name_len, i32 type (0 f32, 1 f16),
              i32 x n_dims dims (reversed: ne[0] = last PyTorch dim),
              name bytes, raw little-endian data

Tensor names are OpenAI Whisper's (the PyTorch state_dict), in state_dict
order. 1-D tensors, the conv biases (written as [n, 1]) and both positional
embeddings are f32; everything else stays f16 as stored by CTranslate2.
"""

import argparse
import ast
import base64
import os
import struct
import sys
import zipfile

# Acceptance figure for tiny.en (see docs/offline-models.md).
TINY_EN_HPARAMS = (51864, 1500, 384, 6, 4, 448, 384, 6, 4, 80, 1)
TINY_EN_SIZE = 77_704_698

GGML_MAGIC = 0x67676D6C

# CTranslate2 DataType enum (ctranslate2/types.h)
CT2_DTYPES = {0: ("float32", 4), 1: ("int8", 1), 2: ("int16", 2), 3: ("int32", 4),
              4: ("float16", 2), 5: ("bfloat16", 2)}
CT2_F32, CT2_F16 = 0, 4


def log(msg):
    print(f"ct2_to_ggml: {msg}", file=sys.stderr)


def die(msg):
    log(f"error: {msg}")
    sys.exit(1)


# --------------------------------------------------------------------------
# CTranslate2 model.bin reader
# --------------------------------------------------------------------------

class Var:
    __slots__ = ("name", "shape", "dtype", "data")

    def __init__(self, name, shape, dtype, data):
        self.name, self.shape, self.dtype, self.data = name, shape, dtype, data

    def scalar(self):
        if self.shape:
            raise ValueError(f"{self.name} is not a scalar")
        fmt = {1: "<b", 2: "<h", 3: "<i", 0: "<f"}[self.dtype]
        return struct.unpack(fmt, self.data)[0]


def read_ct2(path):
    with open(path, "rb") as f:
        buf = f.read()
    mv = memoryview(buf)
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return vals[0] if len(vals) == 1 else vals

    def string():
        nonlocal pos
        n = take("H")
        s = bytes(mv[pos:pos + n])
        pos += n
        return s.rstrip(b"\0").decode("utf-8")

    version = take("I")
    if version < 5:
        die(f"{path}: CTranslate2 binary version {version} < 5 is not supported")
    spec = string()
    if spec != "WhisperSpec":
        die(f"{path}: spec is {spec!r}, expected 'WhisperSpec'")
    revision = take("I")
    count = take("I")
    variables = {}
    for _ in range(count):
        name = string()
        rank = take("B")
        shape = tuple(take("I") for _ in range(rank)) if rank else ()
        dtype = take("B")
        nbytes = take("I")
        if dtype not in CT2_DTYPES:
            die(f"{name}: unknown CTranslate2 dtype {dtype}")
        n = 1
        for d in shape:
            n *= d
        if n * CT2_DTYPES[dtype][1] != nbytes:
            die(f"{name}: shape {shape} x {CT2_DTYPES[dtype][0]} != {nbytes} bytes")
        variables[name] = Var(name, shape, dtype, mv[pos:pos + nbytes])
        pos += nbytes
    aliases = {}
    if pos < len(buf):
        # Trailing alias table: u32 count, then (alias, target) string pairs.
        try:
            n_alias = take("I")
            for _ in range(n_alias):
                a = string()
                t = string()
                aliases[a] = t
        except (struct.error, UnicodeDecodeError):
            log(f"warning: could not parse {len(buf) - pos} trailing bytes; ignored")
    log(f"{os.path.basename(path)}: version {version}, {spec} rev {revision}, "
        f"{count} variables, {len(aliases)} aliases {aliases or ''}")
    return variables, aliases


# --------------------------------------------------------------------------
# .npz / .npy reader
# --------------------------------------------------------------------------

def read_npy(raw):
    if raw[:6] != b"\x93NUMPY":
        die("not a .npy file (bad magic)")
    major = raw[6]
    if major == 1:
        hlen = struct.unpack_from("<H", raw, 8)[0]
        off = 10
    elif major in (2, 3):
        hlen = struct.unpack_from("<I", raw, 8)[0]
        off = 12
    else:
        die(f".npy version {major} not supported")
    header = ast.literal_eval(raw[off:off + hlen].decode("latin1"))
    data = raw[off + hlen:]
    descr, fortran, shape = header["descr"], header["fortran_order"], tuple(header["shape"])
    n = 1
    for d in shape:
        n *= d
    if descr[1:] not in ("f4", "f8", "f2"):
        die(f".npy dtype {descr} not supported")
    endian = ">" if descr[0] == ">" else "<"
    code = {"f4": "f", "f8": "d", "f2": "e"}[descr[1:]]
    vals = struct.unpack_from(f"{endian}{n}{code}", data, 0)
    if fortran and len(shape) == 2:
        r, c = shape
        vals = [vals[j * r + i] for i in range(r) for j in range(c)]
    return shape, descr, vals


def read_mel(npz_path, n_mels):
    key = f"mel_{n_mels}"
    with zipfile.ZipFile(npz_path) as z:
        names = z.namelist()
        member = key + ".npy"
        if member not in names:
            die(f"{npz_path}: no {key} (have {names})")
        shape, descr, vals = read_npy(z.read(member))
    if len(shape) != 2 or shape[0] != n_mels:
        die(f"{key}: unexpected shape {shape}")
    log(f"mel filters {key}: {descr} {shape[0]}x{shape[1]}")
    return shape, vals


# --------------------------------------------------------------------------
# tiktoken vocabulary
# --------------------------------------------------------------------------

def read_tiktoken(path):
    tokens = []
    with open(path, "rb") as f:
        for line in f.read().splitlines():
            if not line.strip():
                continue
            tok, _rank = line.split()
            tokens.append(base64.b64decode(tok))
    log(f"vocabulary {os.path.basename(path)}: {len(tokens)} tokens")
    return tokens


# --------------------------------------------------------------------------
# Name mapping CTranslate2 -> OpenAI Whisper state_dict
# --------------------------------------------------------------------------

# Scalars / flags in a WhisperSpec that carry no tensor for whisper.cpp.
SKIPPED_SCALARS = {
    "decoder/activation", "decoder/alibi", "decoder/alignment_heads",
    "decoder/alignment_layer", "decoder/num_heads", "decoder/pre_norm",
    "decoder/scale_embeddings", "decoder/start_from_zero_embedding",
    "encoder/num_heads",
}


class Mapper:
    """Builds the ordered list of (whisper_name, shape, ct2_dtype, bytes)."""

    def __init__(self, variables, aliases):
        self.v = variables
        self.aliases = aliases
        self.used = set()
        self.out = []

    def get(self, name):
        if name not in self.v and name in self.aliases:
            name = self.aliases[name]
        if name not in self.v:
            die(f"missing CTranslate2 variable {name}")
        self.used.add(name)
        return self.v[name]

    def emit(self, name, shape, dtype, data):
        self.out.append((name, tuple(shape), dtype, data))

    def copy(self, dst, src):
        var = self.get(src)
        self.emit(dst, var.shape, var.dtype, var.data)

    def linear(self, dst, src):
        self.copy(dst + ".weight", src + "/weight")
        self.copy(dst + ".bias", src + "/bias")

    def norm(self, dst, src):
        self.copy(dst + ".weight", src + "/gamma")
        self.copy(dst + ".bias", src + "/beta")

    def split_rows(self, src, parts):
        """Split a fused [parts*d, ...] weight / [parts*d] bias into row blocks."""
        w = self.get(src + "/weight")
        b = self.get(src + "/bias")
        rows = w.shape[0]
        if rows % parts or b.shape != (rows,):
            die(f"{src}: cannot split {w.shape}/{b.shape} into {parts}")
        d = rows // parts
        wrow = len(w.data) // rows
        brow = len(b.data) // rows
        ws = [w.data[i * d * wrow:(i + 1) * d * wrow] for i in range(parts)]
        bs = [b.data[i * d * brow:(i + 1) * d * brow] for i in range(parts)]
        return w, b, d, ws, bs

    def attention_qkv(self, dst, src):
        # Fused Q,K,V; Whisper's key projection has no bias -> drop that slice.
        w, b, d, ws, bs = self.split_rows(src, 3)
        wshape = (d,) + w.shape[1:]
        self.emit(dst + ".query.weight", wshape, w.dtype, ws[0])
        self.emit(dst + ".query.bias", (d,), b.dtype, bs[0])
        self.emit(dst + ".key.weight", wshape, w.dtype, ws[1])
        self.check_zero(src + "/bias[key]", b.dtype, bs[1])
        self.emit(dst + ".value.weight", wshape, w.dtype, ws[2])
        self.emit(dst + ".value.bias", (d,), b.dtype, bs[2])

    def cross_query(self, dst, src):
        self.linear(dst + ".query", src)

    def cross_kv(self, dst, src):
        w, b, d, ws, bs = self.split_rows(src, 2)
        wshape = (d,) + w.shape[1:]
        self.emit(dst + ".key.weight", wshape, w.dtype, ws[0])
        self.check_zero(src + "/bias[key]", b.dtype, bs[0])
        self.emit(dst + ".value.weight", wshape, w.dtype, ws[1])
        self.emit(dst + ".value.bias", (d,), b.dtype, bs[1])

    @staticmethod
    def check_zero(what, dtype, data):
        code = "e" if dtype == CT2_F16 else "f"
        n = len(data) // struct.calcsize(code)
        mx = max(abs(x) for x in struct.unpack_from(f"<{n}{code}", data, 0))
        if mx != 0.0:
            log(f"warning: dropped {what} is not zero (max |x| = {mx})")


def count_layers(variables, prefix):
    n = 0
    while any(k.startswith(f"{prefix}/layer_{n}/") for k in variables):
        n += 1
    return n


def build(variables, aliases):
    m = Mapper(variables, aliases)
    n_enc = count_layers(variables, "encoder")
    n_dec = count_layers(variables, "decoder")

    # encoder (state_dict order: buffer positional_embedding, conv1, conv2, blocks, ln_post)
    m.copy("encoder.positional_embedding", "encoder/position_encodings/encodings")
    m.linear("encoder.conv1", "encoder/conv1")
    m.linear("encoder.conv2", "encoder/conv2")
    for i in range(n_enc):
        s, d = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        m.attention_qkv(d + ".attn", s + "/self_attention/linear_0")
        m.linear(d + ".attn.out", s + "/self_attention/linear_1")
        m.norm(d + ".attn_ln", s + "/self_attention/layer_norm")
        m.linear(d + ".mlp.0", s + "/ffn/linear_0")
        m.linear(d + ".mlp.2", s + "/ffn/linear_1")
        m.norm(d + ".mlp_ln", s + "/ffn/layer_norm")
    m.norm("encoder.ln_post", "encoder/layer_norm")

    # decoder (state_dict order: parameter positional_embedding, token_embedding, blocks, ln)
    m.copy("decoder.positional_embedding", "decoder/position_encodings/encodings")
    m.copy("decoder.token_embedding.weight", "decoder/embeddings/weight")
    for i in range(n_dec):
        s, d = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        m.attention_qkv(d + ".attn", s + "/self_attention/linear_0")
        m.linear(d + ".attn.out", s + "/self_attention/linear_1")
        m.norm(d + ".attn_ln", s + "/self_attention/layer_norm")
        m.cross_query(d + ".cross_attn", s + "/attention/linear_0")
        m.cross_kv(d + ".cross_attn", s + "/attention/linear_1")
        m.linear(d + ".cross_attn.out", s + "/attention/linear_2")
        m.norm(d + ".cross_attn_ln", s + "/attention/layer_norm")
        m.linear(d + ".mlp.0", s + "/ffn/linear_0")
        m.linear(d + ".mlp.2", s + "/ffn/linear_1")
        m.norm(d + ".mlp_ln", s + "/ffn/layer_norm")
    m.norm("decoder.ln", "decoder/layer_norm")

    # Output projection: whisper.cpp ties it to token_embedding; make sure it is.
    proj = "decoder/projection/weight"
    if proj in variables:
        emb = variables["decoder/embeddings/weight"]
        if bytes(variables[proj].data) != bytes(emb.data):
            die(f"{proj} differs from the token embedding; whisper.cpp cannot represent it")
        m.used.add(proj)
        log(f"{proj}: stored, identical to decoder/embeddings/weight (tied) - skipped")
    elif aliases.get(proj) == "decoder/embeddings/weight":
        log(f"{proj}: alias of decoder/embeddings/weight (tied) - skipped")
    else:
        log(f"warning: no {proj} and no alias; assuming it is tied to the embedding")

    unmapped = [k for k in variables if k not in m.used and k not in SKIPPED_SCALARS]
    skipped = [k for k in variables if k in SKIPPED_SCALARS]
    for k in skipped:
        var = variables[k]
        val = var.scalar() if not var.shape else f"shape {var.shape}"
        log(f"skipped scalar {k} = {val}")
    if unmapped:
        die(f"unmapped CTranslate2 variables: {unmapped}")
    log(f"mapped {len(m.used)} variables, skipped {len(skipped)} scalars, "
        f"writing {len(m.out)} tensors")

    def scalar(name, fallback):
        return variables[name].scalar() if name in variables else fallback

    enc_pos = variables["encoder/position_encodings/encodings"].shape
    dec_pos = variables["decoder/position_encodings/encodings"].shape
    emb = variables["decoder/embeddings/weight"].shape
    conv1 = variables["encoder/conv1/weight"].shape
    hp = (
        emb[0],                                   # n_vocab
        enc_pos[0],                               # n_audio_ctx
        enc_pos[1],                               # n_audio_state
        scalar("encoder/num_heads", enc_pos[1] // 64),
        n_enc,                                    # n_audio_layer
        dec_pos[0],                               # n_text_ctx
        dec_pos[1],                               # n_text_state
        scalar("decoder/num_heads", dec_pos[1] // 64),
        n_dec,                                    # n_text_layer
        conv1[1],                                 # n_mels
        1,                                        # ftype f16
    )
    return hp, m.out


# --------------------------------------------------------------------------
# ggml writer
# --------------------------------------------------------------------------

F32_NAMES = {"encoder.conv1.bias", "encoder.conv2.bias",
             "encoder.positional_embedding", "decoder.positional_embedding"}


def to_f32_bytes(dtype, data):
    if dtype == CT2_F32:
        return bytes(data)
    if dtype == CT2_F16:
        n = len(data) // 2
        return struct.pack(f"<{n}f", *struct.unpack_from(f"<{n}e", data, 0))
    die(f"cannot convert CTranslate2 dtype {dtype} to f32")


def to_f16_bytes(dtype, data):
    if dtype == CT2_F16:
        return data
    if dtype == CT2_F32:
        n = len(data) // 4
        return struct.pack(f"<{n}e", *struct.unpack_from(f"<{n}f", data, 0))
    die(f"cannot convert CTranslate2 dtype {dtype} to f16")


def write_ggml(out_path, hp, mel_shape, mel_vals, tokens, tensors):
    tmp = out_path + ".part"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<i", GGML_MAGIC))
        f.write(struct.pack("<11i", *hp))
        f.write(struct.pack("<ii", *mel_shape))
        f.write(struct.pack(f"<{len(mel_vals)}f", *mel_vals))
        f.write(struct.pack("<i", len(tokens)))
        for t in tokens:
            f.write(struct.pack("<i", len(t)))
            f.write(t)
        for name, shape, dtype, data in tensors:
            # squeeze() as convert-pt-to-ggml.py does, then conv bias -> [n, 1]
            dims = [d for d in shape if d != 1]
            if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
                dims = [dims[0], 1]
            n_dims = len(dims)
            if n_dims < 2 or name in F32_NAMES:
                ftype, raw = 0, to_f32_bytes(dtype, data)
            else:
                ftype, raw = 1, to_f16_bytes(dtype, data)
            bname = name.encode("utf-8")
            f.write(struct.pack("<iii", n_dims, len(bname), ftype))
            f.write(struct.pack(f"<{n_dims}i", *reversed(dims)))
            f.write(bname)
            f.write(raw)
    os.replace(tmp, out_path)


# --------------------------------------------------------------------------
# self-check: parse the written file back the way whisper.cpp does
# --------------------------------------------------------------------------

def expected_tensors(hp):
    n_audio_layer, n_text_layer = hp[4], hp[8]
    names = ["encoder.positional_embedding", "encoder.conv1.weight", "encoder.conv1.bias",
             "encoder.conv2.weight", "encoder.conv2.bias",
             "encoder.ln_post.weight", "encoder.ln_post.bias",
             "decoder.positional_embedding", "decoder.token_embedding.weight",
             "decoder.ln.weight", "decoder.ln.bias"]
    attn = ["query.weight", "query.bias", "key.weight", "value.weight", "value.bias",
            "out.weight", "out.bias"]
    common = ["mlp_ln.weight", "mlp_ln.bias", "mlp.0.weight", "mlp.0.bias",
              "mlp.2.weight", "mlp.2.bias", "attn_ln.weight", "attn_ln.bias"]
    for i in range(n_audio_layer):
        p = f"encoder.blocks.{i}."
        names += [p + c for c in common] + [p + "attn." + a for a in attn]
    for i in range(n_text_layer):
        p = f"decoder.blocks.{i}."
        names += [p + c for c in common] + [p + "attn." + a for a in attn]
        names += [p + "cross_attn_ln.weight", p + "cross_attn_ln.bias"]
        names += [p + "cross_attn." + a for a in attn]
    return set(names)


def self_check(path, hp, n_tokens):
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        buf = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return v

    if take("i")[0] != GGML_MAGIC:
        die("self-check: bad magic")
    if take("11i") != hp:
        die("self-check: hparams differ")
    rows, cols = take("ii")
    pos += rows * cols * 4
    nt = take("i")[0]
    if nt != n_tokens:
        die("self-check: token count differs")
    for _ in range(nt):
        tlen = take("i")[0]
        pos += tlen
    seen = {}
    while pos < len(buf):
        n_dims, nlen, ftype = take("iii")
        dims = take(f"{n_dims}i")
        name = buf[pos:pos + nlen].decode()
        pos += nlen
        n = 1
        for d in dims:
            n *= d
        pos += n * (4 if ftype == 0 else 2)
        seen[name] = (dims, ftype)
    if pos != len(buf):
        die("self-check: truncated tensor data")
    want = expected_tensors(hp)
    missing, extra = want - set(seen), set(seen) - want
    if missing or extra:
        die(f"self-check: missing {sorted(missing)} extra {sorted(extra)}")
    n_state, n_mels = hp[2], hp[9]
    checks = {
        "encoder.conv1.weight": ((3, n_mels, n_state), 1),
        "encoder.conv1.bias": ((1, n_state), 0),
        "encoder.positional_embedding": ((n_state, hp[1]), 0),
        "decoder.positional_embedding": ((hp[6], hp[5]), 0),
        "decoder.token_embedding.weight": ((hp[6], hp[0]), 1),
        "encoder.blocks.0.attn.key.weight": ((n_state, n_state), 1),
        "encoder.blocks.0.attn.query.bias": ((n_state,), 0),
    }
    for name, want_v in checks.items():
        if seen[name] != want_v:
            die(f"self-check: {name} is {seen[name]}, expected {want_v}")
    log(f"self-check: {len(seen)} tensors, all names whisper.cpp expects, {size:,} bytes")
    if hp == TINY_EN_HPARAMS:
        if size != TINY_EN_SIZE:
            die(f"self-check: tiny.en must be exactly {TINY_EN_SIZE:,} bytes, got {size:,}")
        log(f"self-check: size matches the tiny.en reference ({TINY_EN_SIZE:,} bytes) exactly")
    else:
        log("self-check: not tiny.en; no reference size to compare")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-bin", required=True, help="CTranslate2 model.bin")
    ap.add_argument("--mel-npz", required=True, help="whisper/assets/mel_filters.npz")
    ap.add_argument("--tiktoken", required=True, help="whisper/assets/gpt2.tiktoken")
    ap.add_argument("--out", required=True, help="output ggml .bin")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every variable")
    args = ap.parse_args()

    variables, aliases = read_ct2(args.model_bin)
    if args.verbose:
        for k, var in variables.items():
            log(f"  {k} {list(var.shape)} {CT2_DTYPES[var.dtype][0]}")
    hp, tensors = build(variables, aliases)
    log("hparams: n_vocab={} n_audio_ctx={} n_audio_state={} n_audio_head={} "
        "n_audio_layer={} n_text_ctx={} n_text_state={} n_text_head={} "
        "n_text_layer={} n_mels={} ftype={}".format(*hp))
    mel_shape, mel_vals = read_mel(args.mel_npz, hp[9])
    tokens = read_tiktoken(args.tiktoken)
    write_ggml(args.out, hp, mel_shape, mel_vals, tokens, tensors)
    self_check(args.out, hp, len(tokens))


if __name__ == "__main__":
    main()
