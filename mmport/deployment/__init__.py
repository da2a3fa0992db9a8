from .onnx_export import RefinerForExport, compare_onnx_with_pytorch, export_onnx
from .openvino_refiner import OpenVINORefiner

__all__ = ['RefinerForExport', 'export_onnx', 'compare_onnx_with_pytorch', 'OpenVINORefiner']
