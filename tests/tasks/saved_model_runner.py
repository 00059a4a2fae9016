"""Runs requests against a SavedModel in a fresh process (a client, for the export tests).

  python -m tests.tasks.saved_model_runner EXPORT_DIR REQUESTS.pkl RESULTS.pkl

REQUESTS.pkl holds a list of `(name, kind, target, inputs)`: `kind` is
'signature' (`loaded.signatures[target](**inputs)`, every input given, as a
serving client does) or 'function' (`getattr(loaded, target)(**inputs)`, the
restored `tf.function`, whose left-out optional inputs take their defaults).
RESULTS.pkl gets `{name: {'outputs': {key: numpy}}}` or
`{name: {'error': (exception class name, message)}}`, plus `'__signatures__'`:
the signature names the loaded model has. Only the loaded SavedModel is used:
none of the project's model code is imported.
"""

import pickle
import sys

import tensorflow as tf


def main(export_dir: str, requests_path: str, results_path: str) -> None:
  with open(requests_path, 'rb') as f:
    requests = pickle.load(f)
  loaded = tf.saved_model.load(export_dir)
  results = {'__signatures__': sorted(loaded.signatures)}
  for name, kind, target, inputs in requests:
    try:
      if kind == 'signature':
        function = loaded.signatures[target]
      else:
        function = getattr(loaded, target)
      outputs = function(**{k: tf.constant(v) for k, v in inputs.items()})
      results[name] = {'outputs': {k: v.numpy() for k, v in outputs.items()}}
    except Exception as e:  # pylint: disable=broad-except
      results[name] = {'error': (type(e).__name__, str(e))}
  with open(results_path, 'wb') as f:
    pickle.dump(results, f)


if __name__ == '__main__':
  main(*sys.argv[1:4])
