"""The actions: one file each (check, list, restore, verify); cli.py dispatches."""
