"""The plugin's layout: lower layers never import higher ones, and the
research harness (benchmarks/) stays out of the installed package."""
import ast
import os.path as osp
import pathlib

from tests.conftest import REPO

# a subpackage may import its own layer and the ones below it
LAYERS = {'utils': 0, 'structures': 1, 'datasets': 2, 'evaluation': 2, 'models': 3,
          'deployment': 3, 'visualization': 3, 'apis': 4}


def _imports(path: pathlib.Path, module: str):
    """Absolute names of the modules ``path`` (module ``module``) imports."""
    package = module.split('.') if path.name == '__init__.py' else module.split('.')[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                name = '.'.join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            yield name
            yield from (f'{name}.{alias.name}' for alias in node.names)


def test_lower_layers_never_import_higher_ones():
    root = pathlib.Path(REPO) / 'mmport'
    bad = []
    for path in sorted(root.rglob('*.py')):
        parts = path.relative_to(REPO).with_suffix('').parts
        module = '.'.join(parts[:-1] if path.name == '__init__.py' else parts)
        if len(parts) < 3:  # mmport/__init__.py registers everything
            continue
        assert parts[1] in LAYERS, f'{parts[1]}: add it to LAYERS'
        for name in _imports(path, module):
            top = name.split('.')[0]
            assert top != 'benchmarks', f'{module} imports the research harness ({name})'
            if top == 'mmport' and len(name.split('.')) > 1:
                target = name.split('.')[1]
                if target in LAYERS and LAYERS[target] > LAYERS[parts[1]]:
                    bad.append(f'{module} imports {name}')
    assert not bad, bad


def test_wheel_holds_the_plugin_only():
    from setuptools import find_packages
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    with open(osp.join(REPO, 'pyproject.toml'), 'rb') as f:
        find = tomllib.load(f)['tool']['setuptools']['packages']['find']
    packages = find_packages(REPO, include=find['include'], exclude=find.get('exclude', ()))
    assert 'mmport.datasets' in packages and 'mmport.apis' in packages
    assert all(p == 'mmport' or p.startswith('mmport.') for p in packages), packages
    assert osp.isfile(osp.join(REPO, 'benchmarks', 'cross_validation.py'))
