"""The plugin's layout: lower layers never import higher ones, the research
harness (benchmarks/) stays out of the installed package, and its
dependencies are ranges in pyproject.toml, exact pins in requirements/."""
import ast
import os.path as osp
import pathlib
import re

from tests.conftest import REPO

# a subpackage may import its own layer and the ones below it; fitting
# chooses rules for and trains the models, so it sits above them
LAYERS = {'utils': 0, 'structures': 1, 'datasets': 2, 'evaluation': 2, 'models': 3,
          'deployment': 3, 'visualization': 3, 'fitting': 4, 'engine': 4, 'apis': 4}


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


def _pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    with open(osp.join(REPO, 'pyproject.toml'), 'rb') as f:
        return tomllib.load(f)


def test_wheel_holds_the_plugin_only():
    from setuptools import find_packages
    find = _pyproject()['tool']['setuptools']['packages']['find']
    packages = find_packages(REPO, include=find['include'], exclude=find.get('exclude', ()))
    assert 'mmport.datasets' in packages and 'mmport.apis' in packages
    assert all(p == 'mmport' or p.startswith('mmport.') for p in packages), packages
    # the research harness is a package of the repository (the benchmarks run
    # as python -m benchmarks.X), so it is the filter that keeps it out
    assert 'benchmarks' in find_packages(REPO)
    assert 'benchmarks' not in packages


def test_pyproject_ranges_admit_the_exact_pins_of_requirements():
    from packaging.requirements import Requirement
    project = _pyproject()['project']
    ranges = {}
    for line in project['dependencies'] + sum(project['optional-dependencies'].values(), []):
        req = Requirement(line)
        assert not any(s.operator == '==' for s in req.specifier), f'{line}: a range, please'
        ranges.setdefault(req.name.lower().replace('_', '-'), []).append(req.specifier)
    pins = {}
    for path in sorted(pathlib.Path(REPO, 'requirements').glob('*.txt')):
        for line in path.read_text().splitlines():
            line = line.split('#')[0].strip()
            if line:
                req = Requirement(line)
                (spec,) = req.specifier  # one exact version per line
                assert spec.operator == '==', f'{path.name}: {line} is not an exact pin'
                pins[req.name.lower().replace('_', '-')] = spec.version
    for name in ('torch', 'mmengine', 'mmcv', 'mmdet', 'mmpose', 'numpy', 'pytest'):
        assert name in pins and name in ranges, name
    for name, version in pins.items():
        for spec in ranges.get(name, []):
            assert spec.contains(version), f'{name}=={version} is outside {spec}'
    # tools/setup_env.sh takes the OpenMMLab stack's versions from
    # requirements/openmmlab.txt (`pin NAME` reads its NAME==VERSION line) and
    # writes none itself: every name it pins has its line there
    setup = pathlib.Path(REPO, 'tools', 'setup_env.sh').read_text()
    assert re.search(r'^PINS="\$HERE/requirements/openmmlab\.txt"$', setup, re.M)
    openmmlab = {Requirement(line.split('#')[0]).name.lower() for line in
                 pathlib.Path(REPO, 'requirements', 'openmmlab.txt').read_text().splitlines()
                 if line.split('#')[0].strip()}
    stack = set(re.findall(r'\$\(pin (\S+)\)', setup))
    assert {'torch', 'mmengine', 'mmcv', 'mmdet', 'mmpose'} <= stack, stack
    assert stack <= openmmlab, f'no pin in requirements/openmmlab.txt: {stack - openmmlab}'
    assert pins['torch'] not in setup
