"""Build examples/study.ipynb from the cells below (the notebook is committed executed; see docs/api.md).

    python examples/make_notebook.py          # write the unexecuted notebook, then execute it in place:
    rm -rf examples/notebook-runs && python -c "import nbformat; from nbclient import NotebookClient; \
        nb = nbformat.read('examples/study.ipynb', 4); NotebookClient(nb, timeout=1800, kernel_name='python3', \
        resources={'metadata': {'path': 'examples'}}).execute(); nbformat.write(nb, 'examples/study.ipynb')"

The runs go to examples/notebook-runs (git-ignored); a run there from an older recipe is refused
(`fmbench.train` will not mix two runs in one directory), hence the rm.
"""

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell("# The study in a dozen cells: CNN vs Vision Transformer on Fashion-MNIST\n\n"
                      "The student study trained a CNN (0.92 test accuracy) and a ViT (0.70) in Keras and PyTorch "
                      "notebooks. Here the same two architectures train on their short `fast` recipes with "
                      "`fmbench`'s Python API, beside the shipped strong pair. Set `FMBENCH_NOTEBOOK_BUDGET=tiny` "
                      "for a quick run on a subset (the tests do that); the saved outputs are from the full budget."),
    new_code_cell("import os, time\n"
                  "import matplotlib.pyplot as plt\n"
                  "import torch\n"
                  "import fmbench\n\n"
                  "TINY = os.environ.get('FMBENCH_NOTEBOOK_BUDGET', 'full') == 'tiny'\n"
                  "OUT = os.environ.get('FMBENCH_NOTEBOOK_OUT', 'notebook-runs')\n"
                  "budget = {'train_size': 600, 'epochs': 1} if TINY else {}\n"
                  "print(fmbench.__version__, fmbench.list_models(), 'tiny budget' if TINY else 'full budget')"),
    new_markdown_cell("## The data\nFound and verified as the command line does (data directory, cache, Debian's "
                      "package, then the mirrors)."),
    new_code_cell("data = fmbench.load_data()\n"
                  "fig, axes = plt.subplots(2, 10, figsize=(12, 2.8))\n"
                  "for k, name in enumerate(data.classes):\n"
                  "    idx = (data.train_labels == k).nonzero().flatten()[:2]\n"
                  "    for row, i in enumerate(idx):\n"
                  "        axes[row, k].imshow(data.train_images[i], cmap='gray'); axes[row, k].axis('off')\n"
                  "    axes[0, k].set_title(name, fontsize=8)\n"
                  "plt.show()\n"
                  "print(len(data.train_labels), 'training and', len(data.test_labels), 'test images')"),
    new_markdown_cell("## Train the study's two architectures\n`cnn_seed` and `vit_seed` keep the study's layers; "
                      "`fast` is a short sound recipe for each (the study's own recipe is the preset `seed`)."),
    new_code_cell("runs = {}\n"
                  "for name in ('cnn_seed', 'vit_seed'):\n"
                  "    t0 = time.time()\n"
                  "    runs[name] = fmbench.train(name, preset='fast', out=f'{OUT}/{name}', quiet=True, explain=not TINY, **budget)\n"
                  "    print(runs[name], f'{time.time() - t0:.0f} s')"),
    new_markdown_cell("## Learning curves\nEach run keeps one record per epoch (`Run.history`)."),
    new_code_cell("fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))\n"
                  "for name, run in runs.items():\n"
                  "    epochs = [r['epoch'] for r in run.history]\n"
                  "    axes[0].plot(epochs, [r['val_loss'] for r in run.history], marker='o', label=name)\n"
                  "    axes[1].plot(epochs, [r['val_accuracy'] for r in run.history], marker='o', label=name)\n"
                  "axes[0].set_title('validation loss'); axes[1].set_title('validation accuracy')\n"
                  "for ax in axes: ax.set_xlabel('epoch'); ax.legend(); ax.grid(alpha=0.3)\n"
                  "plt.show()"),
    new_markdown_cell("## The comparison report\nThe same report as `fmbench compare`: results beside the "
                      "study's table, errors, where each model looks, significance tests."),
    new_code_cell("report = fmbench.compare(list(runs.values()), out=f'{OUT}/report', test_images=data.test_images)\n"
                  "text = report.with_suffix('.md').read_text()\n"
                  "print(report)\n"
                  "print(text[text.index('## 2.'):text.index('## 3.')])"),
    new_markdown_cell("## The strong pair, shipped\n`create_model(name, pretrained=True)` returns the shipped "
                      "weights (SHA-256-checked) as a plain `nn.Module`: float (N, 1, 28, 28) in [0, 1] in, "
                      "logits out. A plain PyTorch loop scores it."),
    new_code_cell("for name in ('cnn_best', 'vit_best'):\n"
                  "    model = fmbench.create_model(name, pretrained=True)\n"
                  "    correct = 0\n"
                  "    with torch.no_grad():\n"
                  "        for start in range(0, len(data.test_labels), 1000):\n"
                  "            x = data.test_images[start:start + 1000, None].float() / 255\n"
                  "            correct += (model(x).argmax(1) == data.test_labels[start:start + 1000]).sum().item()\n"
                  "    print(f'{name}: test accuracy {correct / len(data.test_labels):.4f}')"),
    new_markdown_cell("## A prediction\nAny image works with `fmbench.predict` (file paths too); here a test image."),
    new_code_cell("i = 409\n"
                  "plt.figure(figsize=(2, 2)); plt.imshow(data.test_images[i], cmap='gray'); plt.axis('off'); plt.show()\n"
                  "print('true class:', data.classes[int(data.test_labels[i])])\n"
                  "for name in ('cnn_best', 'vit_best'):\n"
                  "    p = fmbench.predict(fmbench.create_model(name, pretrained=True), data.test_images[i:i + 1])[0]\n"
                  "    print(name, '->', p['class'], f\"{p['probability']:.1%}\", [f\"{t['class']} {t['probability']:.1%}\" for t in p['top'][1:]])"),
]
nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                        "language": "python"}})
nbformat.write(nb, "examples/study.ipynb")
print("wrote examples/study.ipynb")
