"""Upload of a built dataset directory to the Hugging Face Hub (a dataset repo)."""

from pathlib import Path

from huggingface_hub import HfApi

from dataset_script.report import REPORT_FILE


def check_built_dataset(folder: Path) -> None:
    """Raise unless `folder` is a complete build: README.md card, build report and Parquet shards."""
    folder = Path(folder)
    missing = [name for name in ("README.md", REPORT_FILE) if not (folder / name).is_file()]
    if not any(folder.glob("data/*/*.parquet")):
        missing.append("data/<config>/*.parquet")
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a built dataset (missing {', '.join(missing)}). "
            f"Build it first: python dataset_script/build.py --out {folder} ..."
        )


def push_to_hub(folder: Path, repo_id: str, private: bool = False, token: str | None = None, api: HfApi | None = None):
    """Create the dataset repo `repo_id` if needed and upload `folder` to it; returns the commit info.

    Needs a Hub token with write access (`hf auth login` or `token=`). Errors of the Hub are not caught."""
    check_built_dataset(folder)
    api = api or HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    return api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="dataset",
        commit_message="Upload M2SA dataset built by dataset_script/build.py",
    )
