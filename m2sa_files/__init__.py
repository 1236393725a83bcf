"""File safety shared by the dataset builder and training (standard library only, so `dataset_script` stays light):
writes that a kill cannot leave half done (`m2sa_files.atomic`) and the one rule for recognising a full disk in what
the libraries raise (`m2sa_files.disk_full`)."""
