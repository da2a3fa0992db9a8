from .onnx_export import RefinerForExport, export_onnx

__all__ = ['RefinerForExport', 'export_onnx']
