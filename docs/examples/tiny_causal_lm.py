"""Make a small causal LM that has memorised some TOFU authors, saved with save_pretrained, and the
JSONL files of a deletion request about one of them (the walkthrough of docs/unlearn.md).

    python docs/examples/tiny_causal_lm.py --tofu ../shared/data/tofu --out out/tiny-lm

Writes out/tiny-lm/model/ (a 0.2 M-parameter Llama and its BPE tokenizer), forget.jsonl (the 20
rows about author 1), retain.jsonl (the 180 rows about authors 2-10, also trained on) and
heldout.jsonl (40 rows about authors 11-12, never trained on). About a minute on 2 CPU cores.
"""

import argparse
import json
from pathlib import Path

import torch

from dualoptim.llm.data import QAFormat, TofuSource
from dualoptim.llm.models import TinyModelConfig, build_tiny_llama, finetune, train_tokenizer

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--tofu", default="../shared/data/tofu", help="folder of TOFU's JSON files")
parser.add_argument("--out", default="out/tiny-lm")
parser.add_argument("--epochs", type=int, default=60)
args = parser.parse_args()

torch.set_num_threads(1)
out = Path(args.out)
rows = [{"question": r["question"], "answer": r["answer"]} for r in TofuSource(args.tofu).rows("forget10.json")]
authors = [rows[i : i + 20] for i in range(0, len(rows), 20)]  # TOFU: 20 rows per fictitious author
forget, retain, heldout = authors[0], sum(authors[1:10], []), sum(authors[10:12], [])

tokenizer = train_tokenizer([f"{r['question']} {r['answer']}" for r in rows], vocab_size=1024)
config = TinyModelConfig(vocab_size=1024, hidden_size=64, intermediate_size=172, num_layers=2, num_heads=4,
                         max_position_embeddings=256, epochs=args.epochs, batch_size=16, lr=3e-3, warmup_steps=20)
model = build_tiny_llama(config, tokenizer, seed=0)
log = finetune(model, tokenizer, forget + retain, QAFormat(), config, max_length=256, progress=True)
print(f"fine-tuned on {len(forget) + len(retain)} rows in {log['seconds']:.0f} s, last epoch loss {log['epoch_losses'][-1]:.3f}")
model.save_pretrained(out / "model")
tokenizer.save_pretrained(out / "model")
for name, part in (("forget", forget), ("retain", retain), ("heldout", heldout)):
    (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
print(f"model and forget/retain/heldout.jsonl in {out}")
