"""The data stage, MindFormers' alpaca_converter.py and llama_preprocess.py:
alpaca.py (alpaca -> conversation JSON), formats.py (the record shapes and file
layouts preprocess reads: ShareGPT, OpenAI messages, alpaca; JSON list or JSON
Lines), template.py (FastChat templates: MindFormers' vicuna_v1.1 and every other
that can be masked, for training rows and generation prompts), tokenizer.py
(SentencePiece as MindFormers' LlamaTokenizer), rows.py (qa rows as MindFormers
builds them, wiki rows, stats), chat_rows.py (qa rows of any template, or with the
prompt trained), wikitext.py (wiki input), preprocess.py (workers -> MindRecord),
mindrecord_writer.py (the fast MindRecord writer), cli.py (the two subcommands);
reader.py reads MindRecord batches for training and evaluation."""
