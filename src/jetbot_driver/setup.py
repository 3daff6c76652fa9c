from setuptools import find_packages, setup

package_name = 'jetbot_driver'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=[
        'devbot',
        'numpy',
        'rpyc',
    ],  # + OpenCV (pip opencv-python-headless, or JetPack's cv2 on the robot)
    zip_safe=True,
    maintainer='devbot maintainers',
    maintainer_email='maintainers@devbot.invalid',
    description='JetBot over RPyC: the ROS 2 driver node (camera, discrete actions, cmd_vel, '
    'safety), the JetBot-side RPyC server, a simulated JetBot server and a live camera feed.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'jetbot_driver_node = jetbot_driver.node:main',
            'jetbot_server = jetbot_driver.server:main',
            'jetbot_sim_server = jetbot_driver.sim_server:main',
        ],
        'devbot.commands': [
            'jetbot-feed = jetbot_driver.feed:main',
        ],
    },
)
