def read(path, options): raise NotImplementedError
