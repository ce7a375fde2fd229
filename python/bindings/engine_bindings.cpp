// _core.Engine: the step scheduler (tformer/engine.h). submit() checks on the calling thread
// and returns at once; the results come back through a Python callable called on the engine
// thread with the GIL (python/tformer/engine.py turns it into a Future). Every Python object
// the engine keeps is released under the GIL, whichever thread drops it last.
#include <pybind11/stl.h>

#include "numpy_interop.h"
#include "register.h"
#include "tformer/engine.h"

namespace py = pybind11;

namespace tformer::bindings {
namespace {

std::shared_ptr<py::object> gil_held(py::object o) {
  return std::shared_ptr<py::object>(new py::object(std::move(o)), [](py::object* p) {
    py::gil_scoped_acquire gil;
    delete p;
  });
}

py::dict stats_dict(const EngineStats& s) {
  py::dict d;
  d["steps"] = s.steps;
  d["rows_last_step"] = s.rows_last_step;
  d["rows_per_step_mean"] = s.steps ? static_cast<double>(s.rows_total) / static_cast<double>(s.steps) : 0.0;
  d["queue_length"] = s.queue_length;
  d["running_requests"] = s.running_requests;
  d["running_rows"] = s.running_rows;
  d["max_rows"] = s.max_rows;
  d["kv_block_size"] = s.kv_block_size;
  d["kv_blocks_total"] = s.kv_blocks_total;
  d["kv_blocks_used"] = s.kv_blocks_used;
  d["kv_blocks_reserved"] = s.kv_blocks_reserved;
  d["kv_bytes_total"] = s.kv_bytes_total;
  d["kv_bytes_used"] = s.kv_bytes_used;
  d["submitted"] = s.submitted;
  d["completed"] = s.completed;
  d["failed"] = s.failed;
  d["encoder_tokens"] = s.encoder_tokens;
  return d;
}

}  // namespace

void register_engine(py::module_& m) {
  py::class_<Engine>(m, "Engine",
                     "The step scheduler: requests join and leave the running batch at every decode step.")
      .def(py::init([](const Transformer& model, int64_t max_rows, int64_t max_batch_tokens, int64_t kv_cache_bytes,
                       int64_t block_size, int64_t large_request_every, int64_t small_request_rows,
                       int64_t update_wait_steps) {
             EngineOptions o;
             o.large_request_every = large_request_every;
             o.small_request_rows = small_request_rows;
             o.max_rows = max_rows;
             o.max_batch_tokens = max_batch_tokens;
             o.kv_cache_bytes = kv_cache_bytes;
             o.block_size = block_size;
             o.update_wait_steps = update_wait_steps;
             py::gil_scoped_release release;
             return std::make_unique<Engine>(model, o);
           }),
           py::arg("model"), py::arg("max_rows") = 256, py::arg("max_batch_tokens") = 8192,
           py::arg("kv_cache_bytes") = 0, py::arg("block_size") = 16, py::arg("large_request_every") = 1,
           py::arg("small_request_rows") = 4, py::arg("update_wait_steps") = 1024,
           py::keep_alive<1, 2>())
      .def(
          "submit",
          [](Engine& e, const py::array& ids, const std::vector<int32_t>& lengths, const GenerationOptions& options,
             py::object on_done) {
            if (!PyCallable_Check(on_done.ptr())) throw py::type_error("on_done must be callable");
            TokenBatch src;
            src.ids = tensor_from_numpy(ids, DType::i32, "src_ids");
            src.lengths = lengths;
            auto fn = gil_held(std::move(on_done));
            Engine::Done done = [fn](std::vector<GenerationResult>&& results, const std::string& error) {
              py::gil_scoped_acquire gil;
              try {
                if (error.empty()) (*fn)(py::cast(std::move(results)), py::none());
                else (*fn)(py::none(), error);
              } catch (py::error_already_set& err) {  // the callback's own failure: reported, not raised here
                err.discard_as_unraisable("tformer Engine on_done callback");
              }
            };
            return e.submit(src, options, std::move(done));
          },
          py::arg("src_ids"), py::arg("src_lengths"), py::arg("options"), py::arg("on_done"),
          "Queues a request; on_done(results, None) or on_done(None, error message) runs on the engine thread. "
          "Returns the request's id.")
      .def("stats", [](const Engine& e) { return stats_dict(e.stats()); }, "The engine's counters (see tformer.Engine.stats).")
      .def("close", [](Engine& e) {
        py::gil_scoped_release release;
        e.close();
      }, "Cancels the queued and running requests and stops the engine thread.");
}

}  // namespace tformer::bindings
