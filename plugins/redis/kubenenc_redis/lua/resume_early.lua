-- resume_early.lua: ResumeEarly.resume_early, a timed wait inside a task ran out (see
-- lib_resume.lua).
return reply(resume_paused(ARGV, true))
