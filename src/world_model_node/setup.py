from setuptools import find_packages, setup

package_name = 'world_model_node'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['devbot', 'toroidal_sim', 'numpy', 'torch', 'timm', 'pyyaml', 'matplotlib'],
    zip_safe=True,
    maintainer='devbot maintainers',
    maintainer_email='maintainers@devbot.invalid',
    description=(
        'Online world model: masked-autoencoder ViT and action-conditioned transformer '
        'predictor with FiLM.'
    ),
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'world_model_node = world_model_node.node:main',
        ],
        'devbot.commands': [
            'replay = world_model_node.replay:main',
            'train = world_model_node.offline.cli:main',
        ],
    },
)
