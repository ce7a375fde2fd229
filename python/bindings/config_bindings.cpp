// TransformerConfig as _core.ModelConfig; enums are exposed as strings.
#include <pybind11/stl.h>

#include "register.h"
#include "tformer/relative_position.h"
#include "tformer/config.h"
#include "tformer/errors.h"
#include "tformer/ops.h"

namespace py = pybind11;

namespace tformer::bindings {

void register_config(py::module_& m) {
  using C = TransformerConfig;
  m.def("config_limits", [] {
    using L = ConfigLimits;
    py::dict d;
    d["vocab_size"] = L::max_vocab_size;
    d["d_model"] = L::max_d_model;
    d["layers"] = L::max_layers;
    d["ffn_dim"] = L::max_ffn_dim;
    d["max_positions"] = L::max_positions;
    d["relative_buckets"] = L::max_relative_buckets;
    return d;
  }, "Upper bounds of TransformerConfig's sizes (ConfigLimits in cpp/include/tformer/config.h).");
  m.def(
      "relative_position_buckets",
      [](int64_t first, int64_t count, bool bidirectional, int64_t num_buckets, int64_t max_distance) {
        C probe;  // the config's own checks of the two sizes
        probe.src_vocab_size = probe.tgt_vocab_size = 1;
        probe.relative_attention_buckets = num_buckets;
        probe.relative_attention_max_distance = max_distance;
        probe.validate();
        if (count < 0) throw_value_error("relative_position_buckets: count must be >= 0, got ", count);
        std::vector<int32_t> out(static_cast<size_t>(count));
        relative_position_buckets(out.data(), first, count, bidirectional, num_buckets, max_distance);
        return out;
      },
      py::arg("first"), py::arg("count"), py::arg("bidirectional"), py::arg("num_buckets"), py::arg("max_distance"),
      "T5 bucket ids of the relative positions first .. first + count - 1 (what the model uploads).");
  py::class_<C>(m, "ModelConfig", "Architecture of an encoder-decoder Transformer (see tformer.TransformerConfig).")
      .def(py::init<>())
      .def_readwrite("src_vocab_size", &C::src_vocab_size)
      .def_readwrite("tgt_vocab_size", &C::tgt_vocab_size)
      .def_readwrite("d_model", &C::d_model)
      .def_readwrite("encoder_layers", &C::encoder_layers)
      .def_readwrite("decoder_layers", &C::decoder_layers)
      .def_readwrite("encoder_heads", &C::encoder_heads)
      .def_readwrite("decoder_heads", &C::decoder_heads)
      .def_readwrite("encoder_ffn_dim", &C::encoder_ffn_dim)
      .def_readwrite("decoder_ffn_dim", &C::decoder_ffn_dim)
      .def_property(
          "activation", [](const C& c) { return std::string(ops::activation_name(c.activation)); },
          [](C& c, const std::string& name) { c.activation = ops::parse_activation(name); })
      .def_readwrite("pre_norm", &C::pre_norm)
      .def_readwrite("encoder_final_norm", &C::encoder_final_norm)
      .def_readwrite("decoder_final_norm", &C::decoder_final_norm)
      .def_readwrite("embed_norm", &C::embed_norm)
      .def_readwrite("embed_scale", &C::embed_scale)
      .def_readwrite("max_positions", &C::max_positions)
      .def_property(
          "position_ids",
          [](const C& c) { return std::string(c.position_ids == PositionIds::arange ? "arange" : "count_non_pad"); },
          [](C& c, const std::string& name) {
            if (name == "arange") c.position_ids = PositionIds::arange;
            else if (name == "count_non_pad") c.position_ids = PositionIds::count_non_pad;
            else throw_value_error("position_ids must be 'arange' or 'count_non_pad', got '", name, "'");
          })
      .def_readwrite("position_offset", &C::position_offset)
      .def_readwrite("pad_id", &C::pad_id)
      .def_readwrite("shared_embeddings", &C::shared_embeddings)
      .def_readwrite("tied_output", &C::tied_output)
      .def_readwrite("final_logits_bias", &C::final_logits_bias)
      .def_readwrite("layer_norm_eps", &C::layer_norm_eps)
      .def_readwrite("rms_norm", &C::rms_norm)
      .def_readwrite("linear_bias", &C::linear_bias)
      .def_readwrite("head_dim", &C::head_dim)
      .def_readwrite("attention_scale", &C::attention_scale)
      .def_readwrite("gated_ffn", &C::gated_ffn)
      .def_readwrite("position_table", &C::position_table)
      .def_readwrite("relative_attention_buckets", &C::relative_attention_buckets)
      .def_readwrite("relative_attention_max_distance", &C::relative_attention_max_distance)
      .def_readwrite("logits_scale", &C::logits_scale)
      .def_readwrite("padding_row", &C::padding_row)
      .def_readwrite("final_norm_dropout", &C::final_norm_dropout)
      .def("validate", &C::validate)
      .def("parameter_shapes", [](const C& c) {
        py::list out;
        for (auto& [name, shape] : c.parameter_shapes()) out.append(py::make_tuple(name, py::tuple(py::cast(shape))));
        return out;
      });
}

}  // namespace tformer::bindings
