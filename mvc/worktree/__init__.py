"""Working folders: the only code that reads and writes users' model folders."""
