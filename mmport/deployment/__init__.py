from .onnx_export import RefinerForExport, export_onnx
from .openvino_refiner import OpenVINORefiner

__all__ = ['RefinerForExport', 'export_onnx', 'OpenVINORefiner']
