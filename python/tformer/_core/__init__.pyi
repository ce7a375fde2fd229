"""
tformer C++ core
"""
from __future__ import annotations
import collections.abc
import numpy
import typing
from . import ops
from . import bench
__all__: list[str] = ['CancelToken', 'Engine', 'GenerationOptions', 'GenerationResultCore', 'MAX_BEAM_SIZE', 'Model', 'ModelConfig', 'TrainGraph', 'bench', 'blas_info', 'canonical_dtype', 'check_device', 'config_limits', 'cuda_available', 'cuda_backend_built', 'cuda_backend_name', 'cuda_device_count', 'cuda_library_path', 'cuda_unavailable_reason', 'empty_cache', 'get_num_threads', 'learning_rate', 'ops', 'profile_report', 'profile_reset', 'relative_position_buckets', 'set_num_threads', 'tensor_allocations']
class ModelConfig:
    """
    Architecture of an encoder-decoder Transformer (see tformer.TransformerConfig).
    """
    activation: str
    decoder_final_norm: bool
    embed_norm: bool
    encoder_final_norm: bool
    final_logits_bias: bool
    final_norm_dropout: bool
    gated_ffn: bool
    linear_bias: bool
    padding_row: bool
    position_ids: str
    position_table: bool
    pre_norm: bool
    rms_norm: bool
    shared_embeddings: bool
    tied_output: bool
    def __init__(self) -> None:
        ...
    def parameter_shapes(self) -> list[typing.Any]:
        ...
    def validate(self) -> None:
        ...
    @property
    def attention_scale(self) -> float:
        ...
    @attention_scale.setter
    def attention_scale(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def d_model(self) -> int:
        ...
    @d_model.setter
    def d_model(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def decoder_ffn_dim(self) -> int:
        ...
    @decoder_ffn_dim.setter
    def decoder_ffn_dim(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def decoder_heads(self) -> int:
        ...
    @decoder_heads.setter
    def decoder_heads(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def decoder_layers(self) -> int:
        ...
    @decoder_layers.setter
    def decoder_layers(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def embed_scale(self) -> float:
        ...
    @embed_scale.setter
    def embed_scale(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def encoder_ffn_dim(self) -> int:
        ...
    @encoder_ffn_dim.setter
    def encoder_ffn_dim(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def encoder_heads(self) -> int:
        ...
    @encoder_heads.setter
    def encoder_heads(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def encoder_layers(self) -> int:
        ...
    @encoder_layers.setter
    def encoder_layers(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def head_dim(self) -> int:
        ...
    @head_dim.setter
    def head_dim(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def layer_norm_eps(self) -> float:
        ...
    @layer_norm_eps.setter
    def layer_norm_eps(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def logits_scale(self) -> float:
        ...
    @logits_scale.setter
    def logits_scale(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def max_positions(self) -> int:
        ...
    @max_positions.setter
    def max_positions(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def pad_id(self) -> int:
        ...
    @pad_id.setter
    def pad_id(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def position_offset(self) -> int:
        ...
    @position_offset.setter
    def position_offset(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def relative_attention_buckets(self) -> int:
        ...
    @relative_attention_buckets.setter
    def relative_attention_buckets(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def relative_attention_max_distance(self) -> int:
        ...
    @relative_attention_max_distance.setter
    def relative_attention_max_distance(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def src_vocab_size(self) -> int:
        ...
    @src_vocab_size.setter
    def src_vocab_size(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def tgt_vocab_size(self) -> int:
        ...
    @tgt_vocab_size.setter
    def tgt_vocab_size(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class CancelToken:
    """
    Stops a generate call, or some of its sources, from another thread: cancel(), or a timeout
    in seconds after which it cancels by itself. Pass it as generate(..., cancel=token) (the
    whole call) or cancel=[token per source]; checked once per decode step and before encoding.
    """
    def __init__(self, timeout: typing.Any = None) -> None:
        ...
    def __repr__(self) -> str:
        ...
    def cancel(self) -> None:
        """
        Cancels: the sources holding this token stop at their next step.
        """
    @property
    def cancelled(self) -> bool:
        """
        True once cancel() was called or the timeout passed.
        """
    @property
    def remaining(self) -> typing.Any:
        """
        Seconds left before the timeout (0 once passed), or None without one.
        """
class GenerationOptions:
    """
    Options of Model.generate (see tformer.Transformer.generate).
    """
    do_sample: bool
    early_stopping: bool
    renormalize_logits: bool
    return_attention: bool
    return_scores: bool
    def __init__(self) -> None:
        ...
    def set_cancel(self, tokens: collections.abc.Sequence[CancelToken]) -> None:
        """
        One CancelToken per source (in the order of the sources given to generate).
        """
    def set_on_token(self, arg0: typing.Any) -> None:
        ...
    @property
    def bad_words_ids(self) -> list[list[int]]:
        ...
    @bad_words_ids.setter
    def bad_words_ids(self, arg0: collections.abc.Sequence[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]]) -> None:
        ...
    @property
    def beam_size(self) -> int:
        ...
    @beam_size.setter
    def beam_size(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def decoder_start_token_id(self) -> int:
        ...
    @decoder_start_token_id.setter
    def decoder_start_token_id(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def eos_token_ids(self) -> list[int]:
        ...
    @eos_token_ids.setter
    def eos_token_ids(self, arg0: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> None:
        ...
    @property
    def forced_bos_token_id(self) -> int:
        ...
    @forced_bos_token_id.setter
    def forced_bos_token_id(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def forced_eos_token_id(self) -> int:
        ...
    @forced_eos_token_id.setter
    def forced_eos_token_id(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def length_penalty(self) -> float:
        ...
    @length_penalty.setter
    def length_penalty(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def max_length(self) -> int:
        ...
    @max_length.setter
    def max_length(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def min_length(self) -> int:
        ...
    @min_length.setter
    def min_length(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def no_repeat_ngram_size(self) -> int:
        ...
    @no_repeat_ngram_size.setter
    def no_repeat_ngram_size(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def num_hypotheses(self) -> int:
        ...
    @num_hypotheses.setter
    def num_hypotheses(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def pad_token_id(self) -> int:
        ...
    @pad_token_id.setter
    def pad_token_id(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def repetition_penalty(self) -> float:
        ...
    @repetition_penalty.setter
    def repetition_penalty(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def sample_ids(self) -> list[int]:
        ...
    @sample_ids.setter
    def sample_ids(self, arg0: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> None:
        ...
    @property
    def sampling_temperature(self) -> float:
        ...
    @sampling_temperature.setter
    def sampling_temperature(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def sampling_topk(self) -> int:
        ...
    @sampling_topk.setter
    def sampling_topk(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def sampling_topp(self) -> float:
        ...
    @sampling_topp.setter
    def sampling_topp(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def seed(self) -> int:
        ...
    @seed.setter
    def seed(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def target_prefix(self) -> list[list[int]]:
        ...
    @target_prefix.setter
    def target_prefix(self, arg0: collections.abc.Sequence[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]]) -> None:
        ...
class GenerationResultCore:
    @property
    def attention(self) -> list[typing.Any]:
        ...
    @property
    def cancelled(self) -> bool:
        ...
    @property
    def scores(self) -> list[float]:
        ...
    @property
    def src_len(self) -> int:
        ...
    @property
    def tokens(self) -> list[list[int]]:
        ...
class TrainGraph:
    """
    Forward/backward/AdamW over a Model (see tformer.Trainer).
    """
    def __init__(self, model: Model, frozen: collections.abc.Sequence[str], bucket_bytes: typing.SupportsInt | typing.SupportsIndex = 4194304, compute_dtype: str = 'float32') -> None:
        ...
    def adamw_step(self, lr: typing.SupportsFloat | typing.SupportsIndex, beta1: typing.SupportsFloat | typing.SupportsIndex, beta2: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, step: typing.SupportsInt | typing.SupportsIndex, grad_multiplier: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    def flat_grad(self) -> numpy.ndarray:
        """
        Every gradient in one float32 array (zero-copy view, CPU only), in backward order.
        """
    def flat_grad_pointer(self) -> tuple[int, int, str]:
        """
        (address, elements, device) of the flat gradient buffer, for device collectives.
        """
    def grad(self, name: str) -> numpy.ndarray:
        """
        A float32 copy of one parameter's gradient.
        """
    def grad_norm(self) -> float:
        """
        The L2 norm of all gradients.
        """
    def grad_offset(self, name: str) -> int:
        ...
    def master(self, name: str) -> numpy.ndarray:
        """
        The float32 master copy of a parameter (mixed precision only).
        """
    def moment(self, name: str, which: typing.SupportsInt | typing.SupportsIndex) -> numpy.ndarray:
        """
        A float32 copy of AdamW's first (which=0) or second (which=1) moment.
        """
    def run(self, src_ids: numpy.ndarray, src_lengths: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], tgt_ids: numpy.ndarray, tgt_lengths: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], labels: numpy.ndarray, label_smoothing: typing.SupportsFloat | typing.SupportsIndex, dropout: typing.SupportsFloat | typing.SupportsIndex, activation_dropout: typing.SupportsFloat | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex, grad_scale: typing.SupportsFloat | typing.SupportsIndex, on_bucket_ready: typing.Any = None) -> tuple[float, int]:
        """
        Forward (+ backward when grad_scale != 0: gradients += grad_scale * d(loss sum)); returns (loss sum, tokens).
        on_bucket_ready(i) is called as soon as bucket i of the flat gradient buffer is final.
        """
    def set_master(self, name: str, value: numpy.ndarray) -> None:
        """
        Sets the float32 master copy of a parameter (mixed precision only; the model's weights are not changed).
        """
    def set_moment(self, name: str, which: typing.SupportsInt | typing.SupportsIndex, value: numpy.ndarray) -> None:
        """
        Sets an AdamW moment (see moment).
        """
    def zero_grad(self) -> None:
        """
        Sets every gradient to zero.
        """
    @property
    def buckets(self) -> list[tuple[int, int]]:
        """
        (offset, size) of each bucket in the flat gradient buffer, in backward order.
        """
    @property
    def compute_dtype(self) -> str:
        ...
    @property
    def trainable(self) -> list[str]:
        ...
class _WeightsReading:
    def __enter__(self) -> None:
        ...
    def __exit__(self, *args: typing.Any) -> None:
        ...
class Model:
    """
    The C++ encoder-decoder model (see tformer.Transformer).
    """
    def __init__(self, config: ModelConfig, device: str = 'cpu', dtype: str = 'float32') -> None:
        ...
    def _reading(self) -> _WeightsReading:
        ...
    def encode(self, src_ids: numpy.ndarray, src_lengths: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> numpy.ndarray:
        """
        Encoder output (batch, src_len, d_model) for int32 ids padded on the right.
        """
    def forward(self, src_ids: numpy.ndarray, src_lengths: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], tgt_ids: numpy.ndarray, tgt_lengths: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> numpy.ndarray:
        """
        Logits (batch, tgt_len, tgt_vocab) for int32 ids padded on the right.
        """
    def generate(self, src_ids: numpy.ndarray, src_lengths: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], options: GenerationOptions) -> list[GenerationResultCore]:
        """
        Decodes int32 ids padded on the right (see tformer.Transformer.generate); the GIL is released.
        """
    def int8_parameter_names(self) -> list[str]:
        """
        The parameters stored as int8 (empty unless the model is int8).
        """
    def int8_parameters(self) -> dict[str, typing.Any]:
        """
        {name: (int8 values, float32 row scales)} of every int8 parameter, all taken under one lock.
        """
    def is_int8_parameter(self, name: str) -> bool:
        """
        Whether the model stores this parameter as int8 + per-row scales (int8 models' matrices).
        """
    def missing_parameters(self) -> list[str]:
        """
        The parameters never set (a loader checks that none are left).
        """
    def parameter(self, name: str) -> numpy.ndarray:
        """
        A float32 copy of one parameter.
        """
    def parameter_names(self) -> list[str]:
        """
        Every parameter's tformer name.
        """
    def parameters(self) -> dict[str, typing.Any]:
        """
        Float32 copies of every parameter by name, all taken under one lock.
        """
    def set_int8_parameters(self, values: collections.abc.Sequence[tuple[str, numpy.ndarray, numpy.ndarray]]) -> None:
        """
        Sets [(name, int8 values, float32 row scales)] as they are (an int8 model only); all or none.
        """
    def set_parameter(self, name: str, value: numpy.ndarray) -> None:
        """
        Replaces one parameter (float32 values; quantized on an int8 model).
        """
    def set_parameters(self, values: collections.abc.Sequence[tuple[str, numpy.ndarray]]) -> None:
        """
        Replaces several parameters at once: readers see all of them old or all new.
        """
    def to(self, device: str, dtype: str) -> Model:
        """
        A copy of the model on another device and/or dtype.
        """
    @property
    def compute_dtype(self) -> str:
        """
        The dtype of activations: float32 for an int8 model, else dtype.
        """
    @property
    def config(self) -> ModelConfig:
        ...
    @property
    def device(self) -> str:
        ...
    @property
    def dtype(self) -> str:
        ...
class Engine:
    """
    The step scheduler: requests join and leave the running batch at every decode step.
    """
    def __init__(self, model: Model, max_rows: typing.SupportsInt | typing.SupportsIndex = 256, max_batch_tokens: typing.SupportsInt | typing.SupportsIndex = 8192, kv_cache_bytes: typing.SupportsInt | typing.SupportsIndex = 0, block_size: typing.SupportsInt | typing.SupportsIndex = 16, large_request_every: typing.SupportsInt | typing.SupportsIndex = 1, small_request_rows: typing.SupportsInt | typing.SupportsIndex = 4, update_wait_steps: typing.SupportsInt | typing.SupportsIndex = 1024) -> None:
        ...
    def close(self) -> None:
        """
        Cancels the queued and running requests and stops the engine thread.
        """
    def stats(self) -> dict[str, typing.Any]:
        """
        The engine's counters (see tformer.Engine.stats).
        """
    def submit(self, src_ids: numpy.ndarray, src_lengths: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], options: GenerationOptions, on_done: typing.Any) -> int:
        """
        Queues a request; on_done(results, None) or on_done(None, error message) runs on the engine thread. Returns the request's id.
        """
def blas_info() -> str:
    """
    The BLAS library the CPU matrix products run on.
    """
def canonical_dtype(dtype: str) -> str:
    """
    A dtype's canonical name (ValueError for unknown names).
    """
def check_device(device: str) -> str:
    """
    Parses and checks a device string; returns its canonical name.
    """
def config_limits() -> dict[str, typing.Any]:
    """
    Upper bounds of TransformerConfig's sizes (ConfigLimits in cpp/include/tformer/config.h).
    """
def cuda_available() -> bool:
    """
    Whether the CUDA backend loads and sees at least one GPU.
    """
def cuda_backend_built() -> bool:
    """
    Whether this build has the CUDA backend (libtformer_cuda.so).
    """
def cuda_backend_name() -> str:
    """
    The CUDA backend's name.
    """
def cuda_device_count() -> int:
    """
    GPUs the CUDA backend sees (0 without CUDA).
    """
def cuda_library_path() -> str:
    """
    The libtformer_cuda.so loaded (TFORMER_CUDA_LIBRARY's file, if set).
    """
def cuda_unavailable_reason() -> str:
    """
    Why CUDA cannot be used ('' when it can).
    """
def empty_cache(device: str = 'cpu') -> None:
    """
    Returns cached memory blocks of a device to the system.
    """
def get_num_threads() -> int:
    """
    Threads used by CPU kernels and BLAS (see set_num_threads).
    """
def learning_rate(schedule: str, step: typing.SupportsInt | typing.SupportsIndex, peak_lr: typing.SupportsFloat | typing.SupportsIndex, warmup_steps: typing.SupportsInt | typing.SupportsIndex, total_steps: typing.SupportsInt | typing.SupportsIndex, d_model: typing.SupportsInt | typing.SupportsIndex) -> float:
    """
    The learning rate of `schedule` at 1-based `step` (peak_lr <= 0: the paper's formula).
    """
def profile_report() -> str:
    """
    Per-op times recorded with TFORMER_PROFILE=1.
    """
def profile_reset() -> None:
    """
    Clears the per-op times of profile_report.
    """
def relative_position_buckets(first: typing.SupportsInt | typing.SupportsIndex, count: typing.SupportsInt | typing.SupportsIndex, bidirectional: bool, num_buckets: typing.SupportsInt | typing.SupportsIndex, max_distance: typing.SupportsInt | typing.SupportsIndex) -> list[int]:
    """
    T5 bucket ids of the relative positions first .. first + count - 1 (what the model uploads).
    """
def set_num_threads(n: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Threads used by CPU kernels and BLAS (default: the available cores, or OMP_NUM_THREADS).
    """
def tensor_allocations() -> int:
    """
    Tensor memory allocations so far (all devices); the decode loop makes none.
    """
MAX_BEAM_SIZE: int = 1024
__version__: str
