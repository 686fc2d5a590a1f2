"""DataTransfer (2.0.1 P): the vendor extensions the cloud speaks."""
