"""The course: the lessons in order, found by number, name, slug or file.

A course can also be the variant whose lesson 4 puts N containers on the bridge
(netstep.course.scale).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from netstep.course.lessons import FILE_RE, Lesson, Step, lessons_dir, parse_lesson
from netstep.course.scale import bridge_lesson
from netstep.errors import NetstepError, did_you_mean
from netstep.i18n import _, language
from netstep.render import RenderMixin


@dataclass
class Course(RenderMixin):
    lessons: list[Lesson]

    @classmethod
    def load(cls, folder: str | os.PathLike | None = None, *, mode: str = "sandbox") -> Course:
        """The course as the students of `mode` read it: sandbox, or host (`--host`), without
        the lessons that are the sandbox's only; the course's own lessons each in the chosen
        language where it is translated."""
        files = sorted(p for p in Path(folder or lessons_dir()).glob("*.md") if FILE_RE.match(p.name))
        if not folder:
            files = [p.parent / language() / p.name if (p.parent / language() / p.name).exists() else p
                     for p in files]
        lessons = [parse_lesson(p, mode) for p in files]
        return cls([lesson for lesson in lessons if mode in lesson.modes], mode=mode)

    containers: int | None = None  # lesson 4 rebuilt with this many containers (netstep.course.scale)
    mode: str = "sandbox"  # whose prose it holds (netstep.course.lessons.MODES)

    @property
    def steps(self) -> list[Step]:
        return [step for lesson in self.lessons for step in lesson.steps]

    def sysctl_keys(self) -> tuple[str, ...]:
        """The sysctls worth reading and comparing: every one a step or an exercise's solution sets."""
        actions = [a for step in self.steps for a in step.actions]
        actions += [c.action for lesson in self.lessons if lesson.exercise for c in lesson.exercise.solution]
        return tuple(dict.fromkeys(a.key for a in actions if hasattr(a, "key")))

    def with_containers(self, count: int) -> Course:
        """This course with lesson 4 (the bridge) built for `count` containers."""
        bridge = self.find("bridge")
        lessons = [bridge_lesson(bridge, count) if lesson is bridge else lesson for lesson in self.lessons]
        return Course(lessons, containers=count, mode=self.mode)

    def start_of(self, lesson: Lesson) -> int:
        """Index in `steps` of the lesson's first step."""
        index = 0
        for other in self.lessons:
            if other is lesson:
                return index
            index += len(other.steps)
        raise ValueError(lesson.name)

    def find(self, ref: str) -> Lesson:
        """A lesson by `lesson3`, `3`, its slug, or the path of a lesson file."""
        key = ref.strip().lower()
        for lesson in self.lessons:
            if key in (lesson.name, str(lesson.number), f"{lesson.number:02d}", lesson.slug):
                return lesson
        if ref.endswith(".md") and os.path.exists(ref):
            lesson = parse_lesson(ref, self.mode)
            for i, other in enumerate(self.lessons):
                if other.number == lesson.number:
                    self.lessons[i] = lesson
                    return lesson
            self.lessons.append(lesson)
            self.lessons.sort(key=lambda item: item.number)
            return lesson
        names = ", ".join(f"{le.name} ({le.slug})" for le in self.lessons)
        raise NetstepError(_("There is no lesson '{ref}'.{near} The lessons are: {names}; or the path of a lesson "
                             "file (`run` and `check` also take `all`).").format(
            ref=ref, near=did_you_mean(ref, self.names()), names=names))

    def names(self) -> list[str]:
        """What names a lesson, for a mistyped one's nearest match: `lesson4`, `bridge`."""
        return [name for le in self.lessons for name in (le.name, le.slug)]
