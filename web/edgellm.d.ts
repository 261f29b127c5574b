// TypeScript declarations for edgellm.mjs (see docs/web.md).

export interface Progress {
  /** "download": bytes arriving over the network; "cache": bytes read back from the download
   * cache; "verify": the SHA-256 check (0 of total, then total); "load": a file or buffer. */
  phase: "download" | "cache" | "verify" | "load";
  loaded: number;
  total: number;
}

export interface EngineOptions {
  /** A URL (http, https, blob), a file path or file: URL (Node), an ArrayBuffer (transferred to
   * the worker, so it is detached afterwards), a typed array (copied) or a File/Blob. */
  model: string | URL | ArrayBuffer | ArrayBufferView | Blob;
  /** Threads for inference (default: the CPU count; 1 where the page cannot share memory). */
  threads?: number;
  /** Context length in tokens (default: the model's training context, at most 4096). */
  contextSize?: number;
  /** Called as the model arrives. A callback that throws (or an async one that rejects) is
   * reported once with console.error and still called; the load goes on. */
  onProgress?: (p: Progress) => void;
  /** Force a variant: "mt" (threads; needs a cross-origin-isolated page) or "st". */
  variant?: "mt" | "st";
  /** Lines the WebAssembly module writes to stderr, and the loader's notes (a fallback, a damaged
   * cached copy). Throwing is handled as for onProgress. */
  onLog?: (line: string) => void;
  /** The model's expected SHA-256 (64 hex digits): the bytes are checked before use, and a
   * cached copy is kept under the URL plus this hash. */
  sha256?: string;
  /** Keep downloads in Cache Storage and resume broken ones (default true; no effect in Node). */
  cache?: boolean;
  /** Use the relaxed-SIMD build where the engine validates it (default true; Chromium 114 and
   * later, Node only with --experimental-wasm-relaxed-simd); false: the SIMD128 build. */
  relaxedSimd?: boolean;
  /** A download (of a URL) that receives nothing for this many seconds fails, keeping what
   * arrived for the next load to continue from (default 60). */
  downloadStallSeconds?: number;
  /** Cancels the load, as fetch's signal does: aborting it before createEngine resolves rejects
   * it with a DOMException named "AbortError" (the signal's reason as its `cause`), stops the
   * download (what arrived stays cached, for the next load to continue), ends the worker and
   * frees its memory. An already-aborted signal rejects at once; aborting after createEngine
   * resolved does nothing (unload() frees that engine). */
  signal?: AbortSignal;
}

/** A model in the download cache. */
export interface CachedModel {
  url: string;
  /** The model's size in bytes, and how many of them are stored (less while incomplete). */
  size: number;
  storedBytes: number;
  complete: boolean;
  /** The hash the bytes are checked against: the expected one given for the download, else the
   * one computed when it completed (null while a download without an expected hash is unfinished). */
  sha256: string | null;
  /** When the entry was last written (ms since the epoch). */
  savedAt: number;
}

export interface SamplingRequest {
  temperature?: number;       // 0..2, default 1; 0 is greedy
  top_p?: number;             // 0..1, default 1
  top_k?: number;             // 0 = off
  min_p?: number;             // 0..1, 0 = off
  repeat_penalty?: number;    // 1 = off
  presence_penalty?: number;  // -2..2
  frequency_penalty?: number; // -2..2
  seed?: number;              // non-negative integer
  max_tokens?: number;        // default: until end of text or a full context
  max_completion_tokens?: number;
  stop?: string | string[];   // at most 4
  n?: 1;
  stream?: boolean;
}

export interface ChatMessage {
  role: "system" | "developer" | "user" | "assistant";
  content: string | { type: "text"; text: string }[];
}

export type FinishReason = "stop" | "length" | "abort";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
  extra: { time_to_first_token_s: number; prefill_tokens_per_s: number; decode_tokens_per_s: number };
}

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: { index: 0; message: { role: "assistant"; content: string }; finish_reason: FinishReason; logprobs: null }[];
  usage: Usage;
}

export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: { index: 0; delta: { role?: "assistant"; content?: string }; finish_reason: FinishReason | null; logprobs: null }[];
  /** On the last chunk only. */
  usage?: Usage;
}

export interface Completion {
  id: string;
  object: "text_completion";
  created: number;
  model: string;
  choices: { index: 0; text: string; finish_reason: FinishReason | null; logprobs: null }[];
  usage?: Usage;
}

export interface ChatRequest extends SamplingRequest {
  messages: ChatMessage[];
}

export interface CompletionRequest extends SamplingRequest {
  prompt: string;
}

export interface ModelInfo {
  architecture: string;
  name: string;
  quantization: string;
  n_vocab: number;
  n_layer: number;
  n_embd: number;
  n_ctx: number;
  n_params: number;
  file_bytes: number;
  chat_template: string;
}

export interface RuntimeInfo {
  threads: number;
  multiThreaded: boolean;
  variant: "mt" | "st";
  /** Whether memory can be shared with the worker (a cross-origin-isolated page, or Node). */
  crossOriginIsolated: boolean;
  /** The kernel set in use: "wasm-relaxed" (relaxed SIMD's dots where it has kernels, SIMD128
   * elsewhere), "wasm-simd" (SIMD128) or "scalar". */
  kernelSet: string;
  /** Whether the relaxed-SIMD build (edgellm-<variant>-relaxed.wasm) was loaded. */
  relaxedSimd: boolean;
  /** Whether interrupt() can stop a generation mid-way: always true since session 23 (without
   * shared memory it takes effect between the worker's ~50 ms slices). */
  interruptible: boolean;
  model: ModelInfo;
}

export interface Engine {
  chat: {
    completions: {
      create(req: ChatRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
      create(req: ChatRequest & { stream?: false }): Promise<ChatCompletion>;
      create(req: ChatRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>>;
    };
  };
  completions: {
    create(req: CompletionRequest & { stream: true }): Promise<AsyncIterable<Completion>>;
    create(req: CompletionRequest & { stream?: false }): Promise<Completion>;
    create(req: CompletionRequest): Promise<Completion | AsyncIterable<Completion>>;
  };
  /** Stops the running generation (finish_reason "abort") after its current token, or without
   * shared memory after the worker's current slice of about 50 ms (its prompt too: the part
   * evaluated stays cached). */
  interrupt(): void;
  /** Stops the running generation, frees the model and ends the worker (one that has not
   * answered within 5 s is ended anyway); the engine cannot be used afterwards. */
  unload(): Promise<void>;
  runtimeInfo(): RuntimeInfo;
  /** The download cache of this origin (Cache Storage); in Node it is always empty. */
  cache: {
    list(): Promise<CachedModel[]>;
    /** Removes a model's cached bytes; true when there was an entry. */
    delete(url: string | URL): Promise<boolean>;
  };
  /** Logits (n_tokens x n_vocab) of token ids evaluated from an empty cache with the named kernel
   * set ("" = the default, "scalar" = the portable kernels). For tests. */
  logits(tokens: ArrayLike<number>, kernelSet?: string): Promise<Float32Array>;
}

export function createEngine(options: EngineOptions): Promise<Engine>;

/** Whether this JavaScript engine runs WebAssembly SIMD128, which createEngine needs. */
export function wasmSimdAvailable(): boolean;
/** Whether this engine runs relaxed SIMD's dot products (the relaxed build). */
export function wasmRelaxedSimdAvailable(): boolean;
