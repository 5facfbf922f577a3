"""Where babelmr keeps data: a local folder or S3, behind one small interface (`Store`).

`open_store(uri)` gives the store of a job; `filesystem_for(uri)` opens any local or S3 location
(external inputs need not live in the store); `layout` names every key babelmr writes.
"""

from babelmr.store.base import FileEntry, Store
from babelmr.store.locations import filesystem_for, list_input_files, open_store

__all__ = ["FileEntry", "Store", "filesystem_for", "list_input_files", "open_store"]
