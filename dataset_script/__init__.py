"""Builds the M2SA dataset as a Hugging Face Hub dataset: Parquet shards plus a `README.md` card whose YAML
`configs:` name one config per language, so `load_dataset(repo_or_dir, "de")` works with datasets >= 4.

Run `python dataset_script/build.py --help`; from Python, `dataset_script.build.build_dataset` builds from
readers (`manifest`, `umsab`, `mvsa`) and `dataset_script.demo.ensure_demo_dataset` gives the synthetic
offline demo set.
"""
