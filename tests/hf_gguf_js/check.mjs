// Reads GGUF files written by `edgellm convert --from hf` with the Hugging Face gguf parser (an
// independent implementation of the format, used by the Hub) and checks them against the
// checkpoint's config.json: the architecture name and the hyper-parameter keys GGUF runtimes
// read, with the value types they expect, tensor names, shapes and layout.
//   node check.mjs MODEL.gguf CHECKPOINT_DIR ...
import { gguf } from "@huggingface/gguf";
import fs from "node:fs";

const ARCH = {
  LlamaForCausalLM: "llama", MistralForCausalLM: "llama", Qwen2ForCausalLM: "qwen2",
  Qwen3ForCausalLM: "qwen3", GemmaForCausalLM: "gemma", Gemma2ForCausalLM: "gemma2",
  Gemma3ForCausalLM: "gemma3", Phi3ForCausalLM: "phi3",
};
const UINT32 = 4, FLOAT32 = 6, STRING = 8;
// Bytes per block and elements per block of the types the converter writes.
const LAYOUT = { 0: [4, 1], 1: [2, 1], 30: [2, 1], 8: [34, 32] };

let failures = 0;
function expect(ok, what) {
  if (!ok) {
    failures++;
    console.error("FAIL: " + what);
  }
}

for (let i = 2; i + 1 < process.argv.length; i += 2) {
  const file = process.argv[i], cfg = JSON.parse(fs.readFileSync(process.argv[i + 1] + "/config.json"));
  const { typedMetadata: md, tensorInfos, tensorDataOffset } =
    await gguf(file, { allowLocalFile: true, typedMetadata: true });
  const arch = ARCH[cfg.architectures[0]];
  const where = `${file} (${cfg.architectures[0]})`;
  const is = (key, type, value) => {
    const e = md[key];
    expect(e && e.type === type, `${where}: ${key} missing or not of type ${type}: ${JSON.stringify(e)}`);
    if (e && value !== undefined)
      expect(type === FLOAT32 ? Math.abs(e.value - value) <= 1e-6 * Math.abs(value) : e.value === value,
             `${where}: ${key} = ${e.value}, config.json says ${value}`);
  };
  is("general.architecture", STRING, arch);
  const hd = cfg.head_dim ?? cfg.hidden_size / cfg.num_attention_heads;
  is(`${arch}.context_length`, UINT32, cfg.max_position_embeddings);
  is(`${arch}.embedding_length`, UINT32, cfg.hidden_size);
  is(`${arch}.block_count`, UINT32, cfg.num_hidden_layers);
  is(`${arch}.feed_forward_length`, UINT32, cfg.intermediate_size);
  is(`${arch}.attention.head_count`, UINT32, cfg.num_attention_heads);
  is(`${arch}.attention.head_count_kv`, UINT32, cfg.num_key_value_heads ?? cfg.num_attention_heads);
  is(`${arch}.attention.key_length`, UINT32, hd);
  is(`${arch}.attention.value_length`, UINT32, hd);
  is(`${arch}.rope.dimension_count`, UINT32, Math.floor(hd * (cfg.partial_rotary_factor ?? 1)));
  is(`${arch}.attention.layer_norm_rms_epsilon`, FLOAT32, cfg.rms_norm_eps);
  is(`${arch}.rope.freq_base`, FLOAT32, cfg.rope_theta);
  if (cfg.sliding_window && (arch.startsWith("gemma") || cfg.sliding_window < cfg.max_position_embeddings) &&
      !arch.startsWith("qwen"))
    is(`${arch}.attention.sliding_window`, UINT32, cfg.sliding_window);
  if (cfg.attn_logit_softcapping) is(`${arch}.attn_logit_softcapping`, FLOAT32, cfg.attn_logit_softcapping);
  if (cfg.final_logit_softcapping) is(`${arch}.final_logit_softcapping`, FLOAT32, cfg.final_logit_softcapping);
  if (cfg.rope_scaling?.rope_type === "linear") {
    is(`${arch}.rope.scaling.type`, STRING, "linear");
    is(`${arch}.rope.scaling.factor`, FLOAT32, cfg.rope_scaling.factor);
  }
  if (arch === "phi3") is("phi3.rope.scaling.original_context_length", UINT32, cfg.original_max_position_embeddings);

  // Tensors: names of the GGUF convention, every layer complete, GGUF dimension order
  // (columns first), data aligned and inside the file without overlaps.
  const byName = new Map(tensorInfos.map((t) => [t.name, t]));
  const shape = (n) => byName.get(n)?.shape.map(Number).join("x");
  expect(shape("token_embd.weight") === `${cfg.hidden_size}x${cfg.vocab_size}`,
         `${where}: token_embd.weight is ${shape("token_embd.weight")}`);
  expect(shape("output_norm.weight") === `${cfg.hidden_size}`, `${where}: output_norm.weight`);
  const perLayer = (l) => tensorInfos.filter((t) => t.name.startsWith(`blk.${l}.`)).map((t) => t.name.slice(`blk.${l}.`.length)).sort().join();
  for (let l = 0; l < cfg.num_hidden_layers; l++)
    expect(perLayer(l) === perLayer(0) && perLayer(l).includes("attn_norm.weight") &&
           perLayer(l).includes("ffn_down.weight"), `${where}: layer ${l} tensors: ${perLayer(l)}`);
  expect(shape("blk.0.ffn_down.weight") === `${cfg.intermediate_size}x${cfg.hidden_size}`,
         `${where}: ffn_down is ${shape("blk.0.ffn_down.weight")}`);
  const size = BigInt(fs.statSync(file).size);
  const align = BigInt(md["general.alignment"]?.value ?? 32);
  const spans = tensorInfos.map((t) => {
    const [bytes, block] = LAYOUT[t.dtype] ?? [0, 1];
    const n = t.shape.reduce((a, b) => a * b, 1n);
    expect(LAYOUT[t.dtype] && n % BigInt(block) === 0n, `${where}: ${t.name} has type ${t.dtype}`);
    return [tensorDataOffset + t.offset, tensorDataOffset + t.offset + (n / BigInt(block)) * BigInt(bytes), t.name];
  }).sort((a, b) => (a[0] < b[0] ? -1 : 1));
  let end = tensorDataOffset;
  for (const [b, e, name] of spans) {
    expect(b >= end && (b - tensorDataOffset) % align === 0n && e <= size, `${where}: ${name} data at ${b}..${e}`);
    end = e;
  }
  if (!failures) console.log(`ok: ${where}: ${tensorInfos.length} tensors, ${Object.keys(md).length} keys`);
}
process.exit(failures ? 1 : 0);
