# A random fp32 llama2.c checkpoint (legacy format, shared classifier) of the shipped model's
# shape at equal MACs: d 128, 6 layers, 4 heads, SwiGLU hidden 336, vocab 65, seq 128; and a
# 65-token byte tokenizer. Usage: python3 llama2c_model.py random128.bin tok65.bin
import random, struct, sys
dim, hidden, layers, heads, kv_heads, vocab, seq = 128, 336, 6, 4, 4, 65, 128
hs = dim // heads
rng = random.Random(1234)
def block(n, scale):
    return struct.pack(f"{n}f", *(rng.uniform(-scale, scale) for _ in range(n)))
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("7i", dim, hidden, layers, heads, kv_heads, vocab, seq))
    f.write(block(vocab * dim, 1.0))                  # token embedding (shared classifier)
    f.write(struct.pack(f"{layers*dim}f", *([1.0] * (layers * dim))))   # rms_att
    for n in [layers*dim*dim, layers*dim*kv_heads*hs, layers*dim*kv_heads*hs, layers*dim*dim]:
        f.write(block(n, 0.1))                        # wq wk wv wo
    f.write(struct.pack(f"{layers*dim}f", *([1.0] * (layers * dim))))   # rms_ffn
    for n in [layers*dim*hidden, layers*hidden*dim, layers*dim*hidden]:
        f.write(block(n, 0.1))                        # w1 w2 w3
    f.write(struct.pack(f"{dim}f", *([1.0] * dim)))   # rms_final
    f.write(block(seq * hs // 2 * 2, 0.0))            # the old freq_cis real/imag, unused
with open(sys.argv[2], "wb") as f:
    f.write(struct.pack("i", 1))
    for i in range(vocab):
        b = bytes([32 + i])
        f.write(struct.pack("fi", 0.0, len(b)) + b)
